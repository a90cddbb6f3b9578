// Package enginecmp measures the two engines considered for package store, bbolt and Pebble,
// on the store's workload, side by side. It is a module of its own so that the server's
// module requires only the engine chosen; README.md beside store.go has the figures:
//
//	cd server/store/enginecmp && go test -run '^$' -bench . -benchtime 2s
//
// Each engine gets the store's keys (length-prefixed channel name, Order, arrival) and values
// (a 17-byte header and a 100-byte payload). bbolt runs with its fastest safe settings here
// (no freelist sync, the hashmap freelist); Pebble with its defaults.
package enginecmp
