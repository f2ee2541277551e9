-- wrk script for plain GET runs: prints the latency percentiles that wrk's
-- --latency table leaves out (p99.9, max), in the same line format as
-- events.lua, for bench/run to parse. Values are microseconds.

function done(summary, latency, requests)
    io.write(string.format(
        "latency_us p50=%d p75=%d p90=%d p99=%d p99.9=%d max=%d mean=%.1f\n",
        latency:percentile(50), latency:percentile(75), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max,
        latency.mean))
end
