-- wrk script: the status-polling API. Each request picks a random line of the targets file
-- (`token connector_id job_id`, one line per connector, organizations mixed) and asks either
-- GET /api/v1/connectors/{id} or GET /api/v1/jobs/{id} with that organization's token.
local targets = {}

function init(args)
  local file = args[1] or os.getenv("LOAD_API_TARGETS")
  for line in io.lines(file) do
    local token, connector, job = line:match("^(%S+)%s+(%S+)%s+(%S+)$")
    if token then
      targets[#targets + 1] = { token = token, connector = connector, job = job }
    end
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local t = targets[math.random(#targets)]
  local path
  if math.random(2) == 1 then
    path = "/api/v1/connectors/" .. t.connector
  else
    path = "/api/v1/jobs/" .. t.job
  end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t.token })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
