// Package fanout sends readings to browsers: the hub keeps the last value
// of every sensor and a ring of recent readings, a small pool of writers
// flushes each client's queue (newest value per sensor when it falls
// behind), and a cork batches one flush into one write.
//
// The plugin host reaches it through Publish, SetPlugin and SetState,
// and learns from Demand whether anyone (any attached client) consumes
// readings; the connection side through NewClient, Attach, Detach,
// Subscribe, Resume and the client's queue; a client without a socket (a
// long poll) gets its control frames through ClientOptions.Control and
// its readings from Collect, waking at Published. The concurrency
// contract is written on Hub and Client.
package fanout
