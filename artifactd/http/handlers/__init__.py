"""S3 request handlers, one module per area; :class:`artifactd.http.api.S3Api` combines them."""
