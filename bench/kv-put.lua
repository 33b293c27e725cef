-- wrk script: PUT a 100-byte value under one of 10,000 keys through the control API.
-- Env: NIMBUS_TOKEN.
local value = string.rep("v", 100)
local auth = "Bearer " .. os.getenv("NIMBUS_TOKEN")
local i = 0
request = function()
  i = i + 1
  return wrk.format("PUT", "/v1/kv/bench/keys/k" .. (i % 10000), { ["Authorization"] = auth }, value)
end
