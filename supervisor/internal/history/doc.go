// Package history records sensors for the day: every sample of the last
// hour, then min/avg/max per minute for a day, then per 15 minutes for 30
// days, in fixed rings bounded by history_memory_kb, optionally saved to
// history_dir so an idle exit or an upgrade does not lose them.
//
// Start with Store: New, Add (a record.<id> setting), Record (each
// reading), Query (a history request: points from the finest tier that
// covers the range) and WriteCSV (a download), Save and Load (history_dir).
//
// Files:
//   - store.go: Store, the tiers' sizes and memory accounting (SensorBytes),
//     Add, Remove, Record; the concurrency contract is on Store.
//   - ring.go: the raw ring (8 bytes a sample) and the aggregate tier (14
//     bytes a bucket), with their roll-over.
//   - query.go: Point and its [t,min,avg,max] JSON, Query (tier choice and
//     downsampling), WriteCSV.
//   - file.go: Save (atomic) and Load (versioned gzip'd binary, tolerant of
//     corrupt files).
//
// Memory per sensor is SensorBytes: 8 bytes per raw sample for an hour
// (3600/interval samples, the interval floored at 1 s) plus 60,480 bytes of
// buckets (1440 + 2880 of 14 bytes) plus a 432-byte header and the id:
// 63,792 bytes at 10 s, 89,712 at 1 s (on 64-bit). The default bound, 1 MiB,
// records 16 sensors at 10 s. All of it is allocated by Add and never
// grows; the heap measures about 7 % more (the allocator's size classes).
//
// Values are float32 (7 significant digits: a sysfs temperature or a load
// average keeps every digit it has; a byte counter in the billions is
// better recorded as a rate). Raw times keep milliseconds; bucket times are
// implicit in their slot. Readings must come in time order per sensor: one
// older than the newest recorded (a clock stepped back) is ignored, so a
// device that boots with its clock in 1970 does not spoil a loaded history
// (but a history saved while the clock ran ahead holds recording back until
// the clock gets there again; delete the file to start over).
package history
