"""The GraphQL schema, one module per area; `api.graphql.schema` assembles it."""
