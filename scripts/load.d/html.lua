-- wrk script: an HTML page. Each request picks a random line of the targets file
-- (`cookie connector_id`: a signed-in session of an organization and its connector) and asks
-- for GET /connectors/{id}, the page people watch while a connector syncs.
local targets = {}

function init(args)
  local file = args[1] or os.getenv("LOAD_HTML_TARGETS")
  for line in io.lines(file) do
    local cookie, connector = line:match("^(%S+)%s+(%S+)$")
    if cookie then
      targets[#targets + 1] = { cookie = cookie, connector = connector }
    end
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local t = targets[math.random(#targets)]
  return wrk.format("GET", "/connectors/" .. t.connector, { ["Cookie"] = t.cookie })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
