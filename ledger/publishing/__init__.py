"""Publishing what the money bought: disclosure control, the evaluation report, INDIGO, finance exports."""
