//go:build !wasip1

package leash

// Outside wasip1 there is no session: every KV call fails as a task
// without a session does.

const kvErrNoSession = -10

func hostKVGet(key string, buf []byte) (int32, uint32) { return kvErrNoSession, 0 }
func hostKVPut(key string, value, opts []byte) int32   { return kvErrNoSession }
func hostKVDelete(key string) int32                    { return kvErrNoSession }
func hostKVList(opts, buf []byte) (int32, uint32)      { return kvErrNoSession, 0 }
