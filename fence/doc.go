// Package fence is fencing at the protected resource. (Full documentation
// below is written with the tests.)
package fence
