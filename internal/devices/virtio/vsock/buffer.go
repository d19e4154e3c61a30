package vsock

import (
	"io"
	"slices"
)

// byteQueue is a FIFO of bytes that reuses its backing array. Callers move
// bytes in and out while holding the mux lock; the one exception is a
// reservation (reserve/commit), which lets a single producer fill the tail
// without the lock while consumers keep popping from the head.
type byteQueue struct {
	buf     []byte
	off     int  // bytes before off were consumed.
	filling bool // a reservation is outstanding: buf's backing array must stay put.
}

// Len returns the number of queued bytes.
func (q *byteQueue) Len() int { return len(q.buf) - q.off }

// makeRoom makes cap(q.buf) - len(q.buf) >= n, compacting the backing
// array first when that avoids growing it.
func (q *byteQueue) makeRoom(n int) {
	if q.off > 0 && len(q.buf)+n > cap(q.buf) {
		k := copy(q.buf, q.buf[q.off:])
		q.buf = q.buf[:k]
		q.off = 0
	}
	if len(q.buf)+n > cap(q.buf) {
		q.buf = slices.Grow(q.buf, n)
	}
}

// pushFrom appends exactly n bytes read from r (a guest packet's payload,
// copied once, straight from guest memory). On error nothing is appended.
//
// Preconditions: no reservation is outstanding.
func (q *byteQueue) pushFrom(r io.Reader, n int) error {
	if n == 0 {
		return nil
	}
	q.makeRoom(n)
	tail := q.buf[len(q.buf) : len(q.buf)+n]
	for got := 0; got < n; {
		k, err := r.Read(tail[got:])
		got += k
		if got < n && (err != nil || k == 0) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	q.buf = q.buf[:len(q.buf)+n]
	return nil
}

// reserve returns room for up to n bytes at the tail, to be filled without
// the lock and then appended with commit. Only one reservation may be
// outstanding; reset cancels it.
func (q *byteQueue) reserve(n int) []byte {
	q.makeRoom(n)
	q.filling = true
	return q.buf[len(q.buf) : len(q.buf)+n]
}

// commit appends the first k bytes of the outstanding reservation. It does
// nothing if reset cancelled the reservation.
func (q *byteQueue) commit(k int) {
	if !q.filling {
		return
	}
	q.filling = false
	q.buf = q.buf[:len(q.buf)+k]
	q.consumed()
}

// writeTo moves up to n queued bytes into w with one Write (a guest rx
// buffer: the only copy on the way to the guest) and returns how many.
func (q *byteQueue) writeTo(w io.Writer, n int) (int, error) {
	n = min(n, q.Len())
	k, err := w.Write(q.buf[q.off : q.off+n])
	q.off += k
	q.consumed()
	return k, err
}

// consumed rewinds an empty queue to the start of its backing array,
// unless a reservation is filling it.
func (q *byteQueue) consumed() {
	if q.off == len(q.buf) && !q.filling {
		q.buf = q.buf[:0]
		q.off = 0
	}
}

// swap hands all queued bytes to the caller, who may use them without the
// lock, and continues with spare's backing array (emptied) instead.
//
// Preconditions: no reservation is outstanding.
func (q *byteQueue) swap(spare []byte) []byte {
	data := q.buf[q.off:]
	q.buf, q.off = spare[:0], 0
	return data
}

// reset drops all bytes and the backing array, cancelling a reservation.
func (q *byteQueue) reset() {
	q.buf = nil
	q.off = 0
	q.filling = false
}
