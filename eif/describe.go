package eif

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Metadata is the metadata section (EifIdentityInfo in image-format
// src/defs/mod.rs), serialized as compact JSON in this field order.
type Metadata struct {
	ImageName      string          `json:"ImageName"`
	ImageVersion   string          `json:"ImageVersion"`
	BuildMetadata  BuildInfo       `json:"BuildMetadata"`
	DockerInfo     json.RawMessage `json:"DockerInfo"`     // docker inspect output, or null
	CustomMetadata json.RawMessage `json:"CustomMetadata"` // user JSON (--metadata), or null
}

// BuildInfo is EifBuildInfo: who built the image, when, for which kernel.
type BuildInfo struct {
	BuildTime        string `json:"BuildTime"` // RFC 3339
	BuildTool        string `json:"BuildTool"`
	BuildToolVersion string `json:"BuildToolVersion"`
	OperatingSystem  string `json:"OperatingSystem"`
	KernelVersion    string `json:"KernelVersion"`
}

// Metadata decodes the metadata section; it returns nil, nil when there is
// none (EIF versions before 4, or images built without one).
func (f *File) Metadata() (*Metadata, error) {
	if f.meta < 0 {
		return nil, nil
	}
	b, err := f.readSection(f.meta, MetadataMaxBytes)
	if err != nil {
		return nil, err
	}
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, formatErr(f.sections[f.meta].dataOffset(), f.meta, "metadata section is not valid JSON: %v", err)
	}
	return &m, nil
}

// Description is the object `nitro-cli describe-eif` prints
// (EifDescribeInfo in aws-nitro-enclaves-cli src/common/json_output.rs);
// encoding/json gives nitro-cli's field names and order.
type Description struct {
	EifVersion         uint16           `json:"EifVersion"`
	Measurements       *Measurements    `json:"Measurements"`
	IsSigned           bool             `json:"IsSigned"`
	SigningCertificate *CertificateInfo `json:"SigningCertificate,omitempty"`
	CheckCRC           bool             `json:"CheckCRC"`
	SignatureCheck     *bool            `json:"SignatureCheck,omitempty"`
	ImageName          *string          `json:"ImageName,omitempty"`
	ImageVersion       *string          `json:"ImageVersion,omitempty"`
	Metadata           *MetadataInfo    `json:"Metadata,omitempty"`
}

// CertificateInfo describes the signing certificate the way nitro-cli does
// (SignCertificateInfo in image-format src/utils/eif_reader.rs, whose
// strings come from OpenSSL's printers).
type CertificateInfo struct {
	IssuerName map[string]string `json:"IssuerName"` // OpenSSL long attribute names
	Algorithm  string            `json:"Algorithm"`  // OpenSSL long name of the signature algorithm
	NotBefore  string            `json:"NotBefore"`  // ASN1_TIME_print form, "Jan  2 15:04:05 2006 GMT"
	NotAfter   string            `json:"NotAfter"`
	Signature  string            `json:"Signature"` // certificate signature, "AB:CD:..."
}

// MetadataInfo is the "Metadata" object of describe-eif
// (MetadataDescribeInfo): the build information, DockerInfo, and the custom
// metadata's keys flattened in.
type MetadataInfo struct {
	BuildInfo
	DockerInfo     json.RawMessage
	CustomMetadata json.RawMessage
}

// MarshalJSON writes the build fields, DockerInfo, then the custom metadata
// flattened (serde's #[serde(flatten)]) with its keys sorted; custom keys
// clashing with the fixed ones are dropped, and a non-object custom value is
// kept under "CustomMetadata".
func (m *MetadataInfo) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	write := func(k string, v any) error {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(vb)
		return nil
	}
	fixed := []struct {
		k string
		v any
	}{
		{"BuildTime", m.BuildTime}, {"BuildTool", m.BuildTool},
		{"BuildToolVersion", m.BuildToolVersion}, {"OperatingSystem", m.OperatingSystem},
		{"KernelVersion", m.KernelVersion}, {"DockerInfo", rawOrNull(m.DockerInfo)},
	}
	for _, f := range fixed {
		if err := write(f.k, f.v); err != nil {
			return nil, err
		}
	}
	custom := bytes.TrimSpace(m.CustomMetadata)
	if len(custom) > 0 && !bytes.Equal(custom, []byte("null")) {
		var obj map[string]json.RawMessage
		if custom[0] == '{' && json.Unmarshal(custom, &obj) == nil {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if isFixedMetadataKey(k) {
					continue
				}
				if err := write(k, obj[k]); err != nil {
					return nil, err
				}
			}
		} else if err := write("CustomMetadata", json.RawMessage(custom)); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func isFixedMetadataKey(k string) bool {
	switch k {
	case "BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem", "KernelVersion", "DockerInfo":
		return true
	}
	return false
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(r)) == 0 {
		return json.RawMessage("null")
	}
	return r
}

// Describe measures the file and returns what `nitro-cli describe-eif`
// prints. A CRC mismatch is reported as CheckCRC false, and a signature that
// does not verify or does not cover PCR0 as SignatureCheck false; both
// without error, as nitro-cli does for the CRC. Malformed signature or
// metadata sections are errors.
func (f *File) Describe() (*Description, error) {
	m, crc, err := f.measure()
	if err != nil {
		return nil, err
	}
	d := &Description{EifVersion: f.hdr.version, Measurements: m, CheckCRC: crc == f.hdr.crc}
	meta, err := f.Metadata()
	if err != nil {
		return nil, err
	}
	if meta != nil {
		d.ImageName, d.ImageVersion = &meta.ImageName, &meta.ImageVersion
		d.Metadata = &MetadataInfo{BuildInfo: meta.BuildMetadata, DockerInfo: meta.DockerInfo, CustomMetadata: meta.CustomMetadata}
	}
	if f.sig >= 0 {
		sig, err := f.Signature()
		if err != nil {
			return nil, err
		}
		d.IsSigned = true
		d.SigningCertificate = certificateInfo(sig.Certificate)
		ok := sig.CheckPCR0(m.PCR0) == nil
		d.SignatureCheck = &ok
	}
	return d, nil
}

// certificateInfo renders cert the way nitro-cli's OpenSSL calls print it.
func certificateInfo(cert *x509.Certificate) *CertificateInfo {
	issuer := map[string]string{}
	for _, atv := range cert.Issuer.Names {
		issuer[oidLongName(atv.Type)] = fmt.Sprint(atv.Value)
	}
	hexes := make([]string, len(cert.Signature))
	for i, c := range cert.Signature {
		hexes[i] = fmt.Sprintf("%02X", c)
	}
	const asn1TimePrint = "Jan _2 15:04:05 2006 GMT" // OpenSSL ASN1_TIME_print
	return &CertificateInfo{
		IssuerName: issuer,
		Algorithm:  sigAlgLongName(cert.SignatureAlgorithm),
		NotBefore:  cert.NotBefore.UTC().Format(asn1TimePrint),
		NotAfter:   cert.NotAfter.UTC().Format(asn1TimePrint),
		Signature:  strings.Join(hexes, ":"),
	}
}

// oidLongName returns OpenSSL's long name (LN_* in obj_mac.h) for common
// distinguished-name attributes, or the dotted OID.
func oidLongName(oid asn1.ObjectIdentifier) string {
	names := map[string]string{
		"2.5.4.3": "commonName", "2.5.4.4": "surname", "2.5.4.5": "serialNumber",
		"2.5.4.6": "countryName", "2.5.4.7": "localityName", "2.5.4.8": "stateOrProvinceName",
		"2.5.4.9": "streetAddress", "2.5.4.10": "organizationName", "2.5.4.11": "organizationalUnitName",
		"2.5.4.12": "title", "2.5.4.17": "postalCode", "2.5.4.42": "givenName",
		"1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "domainComponent",
	}
	if n, ok := names[oid.String()]; ok {
		return n
	}
	return oid.String()
}

// sigAlgLongName returns OpenSSL's long name for a signature algorithm.
func sigAlgLongName(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.ECDSAWithSHA1:
		return "ecdsa-with-SHA1"
	case x509.ECDSAWithSHA256:
		return "ecdsa-with-SHA256"
	case x509.ECDSAWithSHA384:
		return "ecdsa-with-SHA384"
	case x509.ECDSAWithSHA512:
		return "ecdsa-with-SHA512"
	case x509.SHA1WithRSA:
		return "sha1WithRSAEncryption"
	case x509.SHA256WithRSA:
		return "sha256WithRSAEncryption"
	case x509.SHA384WithRSA:
		return "sha384WithRSAEncryption"
	case x509.SHA512WithRSA:
		return "sha512WithRSAEncryption"
	case x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return "rsassaPss"
	case x509.PureEd25519:
		return "ED25519"
	}
	return a.String()
}
