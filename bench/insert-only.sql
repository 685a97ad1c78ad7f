-- Insert-only workload for pgbench (-f): one single-statement commit per
-- transaction, so its latency is one commit's. Needs :scale (pgbench -D
-- scale=N) and the pgbench_history table.
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
