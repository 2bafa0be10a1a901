-- wrk script for the read benchmark (loadtest/bench_read.py sets the environment).
--
-- MIX=uniform | zipf: the storefront's product page — six GETs for one product, then the next
--   product. Product ids are drawn uniformly over [ID_MIN, ID_MAX], or Zipf-skewed (s = 1, as a
--   log-uniform rank), with ranks scattered over the id range by a multiplicative hash so the hot
--   products are not simply the lowest ids.
-- MIX=static: the same request every time (the nginx static-file baseline).
-- done() prints one JSON line with the figures bench_read.py reads.

local mix = os.getenv("MIX") or "uniform"
local id_min = tonumber(os.getenv("ID_MIN") or "1")
local id_max = tonumber(os.getenv("ID_MAX") or "1")
local span = id_max - id_min + 1
local log_span = math.log(span)

local page = {
  "/products/%d",
  "/products/%d/styles",
  "/products/%d/related",
  "/reviews/?product_id=%d&sort=relevant&count=1000",
  "/reviews/meta?product_id=%d",
  "/qa/questions?product_id=%d&count=100",
}

local counter = 0
local product = id_min
-- Browsers ask for compressed bodies; GZIP=0 measures without.
local headers = { ["Accept-Encoding"] = "gzip, deflate, br" }
if os.getenv("GZIP") == "0" then
  headers = {}
end

local threads = {}
function setup(thread)
  thread:set("seed", #threads + 1)
  table.insert(threads, thread)
end

-- Everything after the path (" HTTP/1.1", Host, Accept-Encoding, blank line), formatted once:
-- wrk.format per request costs the generator a third of its CPU, taken from the servers under test.
local tail
function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
  tail = wrk.format("GET", "/", headers):sub(#"GET /" + 1)
end

local function pick()
  if mix == "zipf" then
    local rank = math.floor(math.exp(math.random() * log_span))
    return id_min + (rank * 2654435761) % span
  end
  return math.random(id_min, id_max)
end

function request()
  if mix == "static" then
    return "GET /static.json" .. tail
  end
  local slot = counter % 6
  if slot == 0 then
    product = pick()
  end
  counter = counter + 1
  return "GET " .. string.format(page[slot + 1], product) .. tail
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
