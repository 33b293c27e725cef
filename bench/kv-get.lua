-- wrk script: GET one KV key through the control API. Env: NIMBUS_TOKEN.
wrk.method = "GET"
wrk.path = "/v1/kv/bench/keys/k1"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("NIMBUS_TOKEN")
