"""Published formats: the GraphQL SDL and the JSON Schemas of bulk upload files (installed as package data)."""
