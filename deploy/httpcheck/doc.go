// Command httpcheck is the health probe of regent's FROM-scratch image,
// which has no shell, curl or wget: it GETs one URL and exits 0 when the
// answer is 2xx, 1 on any other status, 2 when the server cannot be reached
// or the usage is wrong. The first line of the body goes to stdout (2xx) or
// stderr (anything else).
//
//	httpcheck [-timeout 2s] http://127.0.0.1:9464/healthz
//
// Docker's HEALTHCHECK runs it inside the container; `make cluster-status`
// runs it with docker exec to ask each replica whether it leads a queue
// (/leader?queue=Q answers 200 only on the leader).
//
// Invariant: one request, bounded by -timeout; nothing is retried (the
// caller polls).
package main
