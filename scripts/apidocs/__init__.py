"""The API reference generator behind scripts/gen_api_docs.py, one module per step:

- `model`: the FileDescriptorSet indexed by fully-qualified name, with the proto comments;
- `protojson`: how proto types look in the proto3 JSON mapping (and so through the gateway);
- `paths`: HTTP rule templates as OpenAPI paths, and which request fields travel as query parameters;
- `markdown`: one reference page per `muster.*` package;
- `openapi`: the OpenAPI 3.0 document of the REST gateway;
- `output`: the generated files' names and marker; `render`: every output file from a descriptor set.
"""
