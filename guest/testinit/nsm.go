package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// Values the nsm check sends; the end-to-end test finds them again in the
// attestation document.
const (
	nsmExtendData = "nitrovm-testinit-pcr16"
	nsmUserData   = "nitrovm-testinit-user-data"
	nsmPCRBytes   = 48 // SHA-384 digest size.
	nsmTestPCR    = 16 // first enclave-writable PCR.
	hwrngPath     = "/dev/hwrng"
	hwrngReadSize = 32
)

// nsmCheck exercises /dev/nsm through github.com/hf/nsm as an enclave
// application would, and /dev/hwrng, which Linux's nsm driver feeds:
//
//	NITROVM-TEST nsm_module_id=...
//	NITROVM-TEST nsm_locked_pcrs=[0 1 ... 15]
//	NITROVM-TEST pcr0=<hex>   (also pcr1 to pcr4)
//	NITROVM-TEST pcr16=<hex>  (after extend and lock)
//	NITROVM-TEST random_bytes=N
//	NITROVM-TEST attestation_nonce=<hex>
//	NITROVM-TEST attestation_user_data=<hex>
//	NITROVM-TEST attestation_public_key=<hex>
//	NITROVM-TEST attestation=<base64 COSE_Sign1>
//	NITROVM-TEST hwrng_bytes=32
func nsmCheck(r *report) error {
	sess, err := nsm.OpenDefaultSession()
	if err != nil {
		return fmt.Errorf("open /dev/nsm: %w", err)
	}
	defer sess.Close()

	res, err := nsmSend(sess, &request.DescribeNSM{})
	if err != nil {
		return err
	}
	d := res.DescribeNSM
	if d == nil {
		return errors.New("DescribeNSM: no DescribeNSM in response")
	}
	r.kv("nsm_module_id", "%s", oneLine(d.ModuleID))
	r.kv("nsm_version", "%d.%d.%d", d.VersionMajor, d.VersionMinor, d.VersionPatch)
	r.kv("nsm_max_pcrs", "%d", d.MaxPCRs)
	r.kv("nsm_digest", "%s", d.Digest)
	r.kv("nsm_locked_pcrs", "%v", d.LockedPCRs)
	if d.MaxPCRs != 32 || d.Digest != response.DigestSHA384 {
		return fmt.Errorf("DescribeNSM: got max_pcrs %d digest %q, want 32 SHA384", d.MaxPCRs, d.Digest)
	}

	for i := uint16(0); i < nsmTestPCR; i++ {
		data, locked, err := nsmDescribePCR(sess, i)
		if err != nil {
			return err
		}
		if !locked {
			return fmt.Errorf("PCR%d: got unlocked, want locked at boot", i)
		}
		if i <= 4 {
			r.kv(fmt.Sprintf("pcr%d", i), "%x", data)
		}
	}

	if err := nsmExtendAndLock(r, sess); err != nil {
		return err
	}

	rnd1, err := nsmRandom(sess)
	if err != nil {
		return err
	}
	rnd2, err := nsmRandom(sess)
	if err != nil {
		return err
	}
	if bytes.Equal(rnd1, rnd2) {
		return errors.New("GetRandom: two calls returned the same bytes")
	}
	r.kv("random_bytes", "%d", len(rnd1))

	if err := nsmAttest(r, sess, rnd1); err != nil {
		return err
	}
	return hwrngCheck(r)
}

// nsmSend sends req and turns an NSM error response into an error.
func nsmSend(sess *nsm.Session, req request.Request) (response.Response, error) {
	name := strings.TrimPrefix(fmt.Sprintf("%T", req), "*request.")
	res, err := sess.Send(req)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if res.Error != "" {
		return res, fmt.Errorf("%s: NSM error %s", name, res.Error)
	}
	return res, nil
}

// nsmDescribePCR returns PCR index's value and lock state.
func nsmDescribePCR(sess *nsm.Session, index uint16) ([]byte, bool, error) {
	res, err := nsmSend(sess, &request.DescribePCR{Index: index})
	if err != nil {
		return nil, false, fmt.Errorf("PCR%d: %w", index, err)
	}
	if res.DescribePCR == nil || len(res.DescribePCR.Data) != nsmPCRBytes {
		return nil, false, fmt.Errorf("PCR%d: malformed DescribePCR response", index)
	}
	return res.DescribePCR.Data, res.DescribePCR.Lock, nil
}

// nsmExtendAndLock extends PCR16, checks the SHA-384 chaining, locks it and
// checks that a further extend is refused.
func nsmExtendAndLock(r *report, sess *nsm.Session) error {
	old, locked, err := nsmDescribePCR(sess, nsmTestPCR)
	if err != nil {
		return err
	}
	if locked {
		return fmt.Errorf("PCR%d: locked before the test", nsmTestPCR)
	}
	res, err := nsmSend(sess, &request.ExtendPCR{Index: nsmTestPCR, Data: []byte(nsmExtendData)})
	if err != nil {
		return err
	}
	h := sha512.New384()
	h.Write(old)
	h.Write([]byte(nsmExtendData))
	want := h.Sum(nil)
	if res.ExtendPCR == nil || !bytes.Equal(res.ExtendPCR.Data, want) {
		return fmt.Errorf("ExtendPCR: got %x, want SHA384(old||data) = %x", res.ExtendPCR, want)
	}
	res, err = nsmSend(sess, &request.LockPCR{Index: nsmTestPCR})
	if err != nil {
		return err
	}
	if res.LockPCR == nil {
		return errors.New("LockPCR: no LockPCR in response")
	}
	res, err = sess.Send(&request.ExtendPCR{Index: nsmTestPCR, Data: []byte(nsmExtendData)})
	if err != nil {
		return fmt.Errorf("ExtendPCR after lock: %w", err)
	}
	if res.Error == "" {
		return errors.New("ExtendPCR after lock: got success, want an error")
	}
	r.kv("pcr16_locked_extend", "%s", res.Error)
	data, locked, err := nsmDescribePCR(sess, nsmTestPCR)
	if err != nil {
		return err
	}
	if !locked || !bytes.Equal(data, want) {
		return fmt.Errorf("PCR%d: got lock %v value %x, want locked %x", nsmTestPCR, locked, data, want)
	}
	r.kv("pcr16", "%x", data)
	return nil
}

// nsmRandom returns one GetRandom response's bytes.
func nsmRandom(sess *nsm.Session) ([]byte, error) {
	res, err := nsmSend(sess, &request.GetRandom{})
	if err != nil {
		return nil, err
	}
	if res.GetRandom == nil || len(res.GetRandom.Random) == 0 {
		return nil, errors.New("GetRandom: no random bytes")
	}
	return res.GetRandom.Random, nil
}

// nsmAttest requests an attestation document with a nonce, user data and a
// public key and prints it.
func nsmAttest(r *report, sess *nsm.Session, nonce []byte) error {
	publicKey := []byte("nitrovm-testinit-public-key")
	res, err := nsmSend(sess, &request.Attestation{
		Nonce:     nonce,
		UserData:  []byte(nsmUserData),
		PublicKey: publicKey,
	})
	if err != nil {
		return err
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return errors.New("Attestation: no document")
	}
	r.kv("attestation_nonce", "%x", nonce)
	r.kv("attestation_user_data", "%x", nsmUserData)
	r.kv("attestation_public_key", "%x", publicKey)
	r.kv("attestation", "%s", base64.StdEncoding.EncodeToString(res.Attestation.Document))
	return nil
}

// hwrngCheck reads from /dev/hwrng, which Linux's nsm driver backs with
// GetRandom.
func hwrngCheck(r *report) error {
	if cur, err := os.ReadFile("/sys/class/misc/hw_random/rng_current"); err == nil {
		r.kv("hwrng_current", "%s", oneLine(string(cur)))
	}
	f, err := os.Open(hwrngPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", hwrngPath, err)
	}
	defer f.Close()
	b := make([]byte, hwrngReadSize)
	n, err := io.ReadFull(f, b)
	if err != nil {
		return fmt.Errorf("read %s: got %d bytes: %w", hwrngPath, n, err)
	}
	r.kv("hwrng_bytes", "%d", n)
	return nil
}
