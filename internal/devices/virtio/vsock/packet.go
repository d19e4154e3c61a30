package vsock

import (
	"encoding/binary"
	"fmt"
)

// Header field values (include/uapi/linux/virtio_vsock.h, VirtIO 1.1
// §5.10.6).
const (
	// VIRTIO_VSOCK_TYPE_STREAM is the only socket type the device offers.
	VIRTIO_VSOCK_TYPE_STREAM = 1

	// VIRTIO_VSOCK_OP_INVALID is never sent.
	VIRTIO_VSOCK_OP_INVALID = 0
	// VIRTIO_VSOCK_OP_REQUEST opens a connection.
	VIRTIO_VSOCK_OP_REQUEST = 1
	// VIRTIO_VSOCK_OP_RESPONSE accepts a connection request.
	VIRTIO_VSOCK_OP_RESPONSE = 2
	// VIRTIO_VSOCK_OP_RST refuses or aborts a connection.
	VIRTIO_VSOCK_OP_RST = 3
	// VIRTIO_VSOCK_OP_SHUTDOWN announces that one or both directions end.
	VIRTIO_VSOCK_OP_SHUTDOWN = 4
	// VIRTIO_VSOCK_OP_RW carries stream data.
	VIRTIO_VSOCK_OP_RW = 5
	// VIRTIO_VSOCK_OP_CREDIT_UPDATE tells the peer about freed buffer space.
	VIRTIO_VSOCK_OP_CREDIT_UPDATE = 6
	// VIRTIO_VSOCK_OP_CREDIT_REQUEST asks the peer for a credit update.
	VIRTIO_VSOCK_OP_CREDIT_REQUEST = 7

	// VIRTIO_VSOCK_SHUTDOWN_RCV: the sender will receive no more data.
	VIRTIO_VSOCK_SHUTDOWN_RCV = 1
	// VIRTIO_VSOCK_SHUTDOWN_SEND: the sender will send no more data.
	VIRTIO_VSOCK_SHUTDOWN_SEND = 2
	// shutdownBoth is both shutdown flags.
	shutdownBoth = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND
)

// HeaderSize is the size of struct virtio_vsock_hdr in bytes.
const HeaderSize = 44

// Header is struct virtio_vsock_hdr, from
// include/uapi/linux/virtio_vsock.h (all fields little endian, packed):
//
//	struct virtio_vsock_hdr {
//		__le64	src_cid;
//		__le64	dst_cid;
//		__le32	src_port;
//		__le32	dst_port;
//		__le32	len;
//		__le16	type;		/* enum virtio_vsock_type */
//		__le16	op;		/* enum virtio_vsock_op */
//		__le32	flags;
//		__le32	buf_alloc;
//		__le32	fwd_cnt;
//	} __attribute__((packed));
type Header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32 // payload bytes following the header.
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32 // sender's receive buffer size for this connection.
	FwdCnt   uint32 // bytes the sender has consumed from its buffer.
}

// DecodeHeader decodes a header from the first HeaderSize bytes of b.
// It checks only the length; field values are validated by the device.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("vsock: packet header is %d bytes, want %d", len(b), HeaderSize)
	}
	le := binary.LittleEndian
	return Header{
		SrcCID:   le.Uint64(b[0:8]),
		DstCID:   le.Uint64(b[8:16]),
		SrcPort:  le.Uint32(b[16:20]),
		DstPort:  le.Uint32(b[20:24]),
		Len:      le.Uint32(b[24:28]),
		Type:     le.Uint16(b[28:30]),
		Op:       le.Uint16(b[30:32]),
		Flags:    le.Uint32(b[32:36]),
		BufAlloc: le.Uint32(b[36:40]),
		FwdCnt:   le.Uint32(b[40:44]),
	}, nil
}

// Encode writes h into the first HeaderSize bytes of b, which must be at
// least that long.
func (h Header) Encode(b []byte) {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	le.PutUint64(b[0:8], h.SrcCID)
	le.PutUint64(b[8:16], h.DstCID)
	le.PutUint32(b[16:20], h.SrcPort)
	le.PutUint32(b[20:24], h.DstPort)
	le.PutUint32(b[24:28], h.Len)
	le.PutUint16(b[28:30], h.Type)
	le.PutUint16(b[30:32], h.Op)
	le.PutUint32(b[32:36], h.Flags)
	le.PutUint32(b[36:40], h.BufAlloc)
	le.PutUint32(b[40:44], h.FwdCnt)
}

// String returns a compact description for logs.
func (h Header) String() string {
	return fmt.Sprintf("%s %d:%d->%d:%d len=%d flags=%#x buf_alloc=%d fwd_cnt=%d",
		opName(h.Op), h.SrcCID, h.SrcPort, h.DstCID, h.DstPort, h.Len, h.Flags, h.BufAlloc, h.FwdCnt)
}

func opName(op uint16) string {
	switch op {
	case VIRTIO_VSOCK_OP_REQUEST:
		return "REQUEST"
	case VIRTIO_VSOCK_OP_RESPONSE:
		return "RESPONSE"
	case VIRTIO_VSOCK_OP_RST:
		return "RST"
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		return "SHUTDOWN"
	case VIRTIO_VSOCK_OP_RW:
		return "RW"
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		return "CREDIT_UPDATE"
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		return "CREDIT_REQUEST"
	}
	return fmt.Sprintf("OP(%d)", op)
}
