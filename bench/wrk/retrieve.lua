-- wrk script of bench/serve.py: POST retrieve requests with random entity keys.
--
--   wrk -t1 -c8 -d10s --latency -s bench/wrk/retrieve.lua URL -- \
--       <entities> <keys per request> <hot set size, 0 = all entities> <api key> <features JSON>
--
-- Keys are usr_%08d of entity ids drawn uniformly from 0..entities-1, or, with a hot set of
-- H keys, from the H ids j * floor(entities / H) (bench/serve.py writes the same ids). The
-- body is the retrieve request of the design document; the URL's path is the endpoint
-- (the bare ceiling endpoint receives the same requests). done() prints one line
-- "WRK_JSON {...}" with the counts and latency percentiles (microseconds) that
-- bench/serve.py reads.

local entities, per_request, hot, stride, features
local headers = {}
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_seed", thread_counter)
end

function init(args)
  entities = tonumber(args[1])
  per_request = tonumber(args[2])
  hot = tonumber(args[3])
  headers["Content-Type"] = "application/json"
  headers["X-API-Key"] = args[4]
  features = args[5]
  if hot > 0 then
    stride = math.floor(entities / hot)
  end
  math.randomseed(os.time() * 1000 + (thread_seed or 0))
end

local function key()
  local id
  if hot > 0 then
    id = math.random(0, hot - 1) * stride
  else
    id = math.random(0, entities - 1)
  end
  return string.format('"usr_%08d"', id)
end

function request()
  local keys = {}
  for j = 1, per_request do
    keys[j] = key()
  end
  local body = '{"entity_name":"user","entity_keys":[' .. table.concat(keys, ",")
    .. '],"features":' .. features .. '}'
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,'
      .. '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
