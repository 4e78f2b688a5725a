-- wrk script for bench/: replays prepared request targets (presigned for artifactd and moto,
-- plain paths for nginx), one per request, cycling through them.
--
--   wrk ... -s bench/wrk.lua URL -- MODE TARGETS_FILE HOST THREADS [SIZE [OBJECT_SIZE]]
--
-- MODE get:   GET each target.
-- MODE put:   PUT a SIZE-byte body to each target; every body is distinct (thread id and a
--             counter at its start), so nothing can be deduplicated.  Threads take disjoint
--             targets (thread i uses targets i, i+THREADS, ...).
-- MODE range: GET the target with "Range: bytes=a-(a+SIZE-1)", a random in [0, OBJECT_SIZE-SIZE].
-- Request heads are built once in init(); request() only appends.  done() prints one line
-- "WRKJSON {...}" with the counts bench/loadgen.py reads.

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local heads = {}
local count = 0
local next_index = 0
local step = 1
local mode = "get"
local pad = ""
local range_size = 0
local range_span = 0

function init(args)
   mode = args[1]
   local host = args[3]
   step = tonumber(args[4])
   next_index = id
   for target in io.lines(args[2]) do
      count = count + 1
      if mode == "put" then
         heads[count] = "PUT " .. target .. " HTTP/1.1\r\nHost: " .. host ..
            "\r\nContent-Type: application/octet-stream\r\nContent-Length: " .. args[5] .. "\r\n\r\n"
      elseif mode == "range" then
         heads[count] = "GET " .. target .. " HTTP/1.1\r\nHost: " .. host .. "\r\nRange: bytes="
      else
         heads[count] = "GET " .. target .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
      end
   end
   if mode == "put" then
      pad = string.rep("b", tonumber(args[5]) - 24)
   elseif mode == "range" then
      range_size = tonumber(args[5])
      range_span = tonumber(args[6]) - range_size
   end
   math.randomseed(7919 * (id + 1))
end

function request()
   local head = heads[(next_index % count) + 1]
   next_index = next_index + step
   if mode == "put" then
      return head .. string.format("%08d%016d", id, next_index) .. pad
   elseif mode == "range" then
      local first = math.random(0, range_span)
      return head .. first .. "-" .. (first + range_size - 1) .. "\r\n\r\n"
   end
   return head
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
      '"write": %d, "status": %d, "timeout": %d, "latency_mean_us": %.1f, ' ..
      '"latency_p50_us": %d, "latency_p99_us": %d, "latency_max_us": %d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
end
