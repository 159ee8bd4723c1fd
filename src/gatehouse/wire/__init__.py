"""Wire formats and their mapping to the canonical types.

Each dialect's module holds the msgspec structs for its JSON and both directions of the
mapping, because ingress (api/) and egress (providers/) need the same knowledge: the OpenAI
ingress renders canonical responses as OpenAI JSON, and the OpenAI provider parses OpenAI
JSON into canonical responses. A dialect's errors, both ways (the upstream's error answers
parsed, the client's error body and stream error frame rendered), are in errors_<dialect>.py.
"""
