package vsock

// byteQueue is a FIFO of bytes that reuses its backing array. Callers copy
// bytes in and out while holding the mux lock, so no slice of it escapes.
type byteQueue struct {
	buf []byte
	off int // bytes before off were consumed.
}

// Len returns the number of queued bytes.
func (q *byteQueue) Len() int { return len(q.buf) - q.off }

// push appends p, compacting the backing array first when that avoids
// growing it.
func (q *byteQueue) push(p []byte) {
	if q.off > 0 && len(q.buf)+len(p) > cap(q.buf) {
		n := copy(q.buf, q.buf[q.off:])
		q.buf = q.buf[:n]
		q.off = 0
	}
	q.buf = append(q.buf, p...)
}

// pop moves up to len(p) bytes into p and returns how many.
func (q *byteQueue) pop(p []byte) int {
	n := copy(p, q.buf[q.off:])
	q.off += n
	if q.off == len(q.buf) {
		q.buf = q.buf[:0]
		q.off = 0
	}
	return n
}

// reset drops all bytes and the backing array.
func (q *byteQueue) reset() {
	q.buf = nil
	q.off = 0
}
