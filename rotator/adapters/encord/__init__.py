"""Everything that speaks to Encord: request signing and the HTTP client."""
