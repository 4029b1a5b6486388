"""The ways in: the GraphQL schema, the HTTP app and the `utfall` command line."""
