package kms

import (
	"strconv"
	"time"
)

// Request and response members, named as in AWS KMS's JSON protocol. Blobs
// are []byte (base64 in JSON); absent members are omitted, never null, as
// AWS's C SDK requires.

// Timestamp is a time encoded as epoch seconds, the JSON protocol's
// timestamp format.
type Timestamp time.Time

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(time.Time(t).UnixMilli())/1000, 'f', -1, 64), nil
}

func epoch(t time.Time) *Timestamp {
	ts := Timestamp(t)
	return &ts
}

// KeyMetadata describes a key.
type KeyMetadata struct {
	AWSAccountId           string     `json:",omitempty"`
	KeyId                  string     `json:",omitempty"`
	Arn                    string     `json:",omitempty"`
	CreationDate           *Timestamp `json:",omitempty"`
	DeletionDate           *Timestamp `json:",omitempty"`
	Description            string
	Enabled                bool
	KeyState               string   `json:",omitempty"`
	KeyUsage               string   `json:",omitempty"`
	KeySpec                string   `json:",omitempty"`
	CustomerMasterKeySpec  string   `json:",omitempty"`
	KeyManager             string   `json:",omitempty"`
	Origin                 string   `json:",omitempty"`
	MultiRegion            bool     `json:"MultiRegion"`
	EncryptionAlgorithms   []string `json:",omitempty"`
	SigningAlgorithms      []string `json:",omitempty"`
	KeyAgreementAlgorithms []string `json:",omitempty"`
	MacAlgorithms          []string `json:",omitempty"`
}

// CreateKeyRequest is CreateKey's input.
type CreateKeyRequest struct {
	Policy                         string
	Description                    string
	KeyUsage                       string
	KeySpec                        string
	CustomerMasterKeySpec          string
	Origin                         string
	CustomKeyStoreId               string
	XksKeyId                       string
	MultiRegion                    bool
	BypassPolicyLockoutSafetyCheck bool
	Tags                           []struct{ TagKey, TagValue string }
}

// KeyMetadataResponse is the output of CreateKey and DescribeKey.
type KeyMetadataResponse struct {
	KeyMetadata *KeyMetadata
}

// KeyIDRequest is the input of operations that only name a key.
type KeyIDRequest struct {
	KeyId string
}

// ListRequest is ListKeys' and ListAliases' input.
type ListRequest struct {
	KeyId  string
	Limit  int
	Marker string
}

// KeyListEntry is one ListKeys entry.
type KeyListEntry struct {
	KeyId  string
	KeyArn string
}

// ListKeysResponse is ListKeys' output.
type ListKeysResponse struct {
	Keys       []KeyListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// CreateAliasRequest is CreateAlias's input.
type CreateAliasRequest struct {
	AliasName   string
	TargetKeyId string
}

// AliasListEntry is one ListAliases entry.
type AliasListEntry struct {
	AliasName       string
	AliasArn        string
	TargetKeyId     string     `json:",omitempty"`
	CreationDate    *Timestamp `json:",omitempty"`
	LastUpdatedDate *Timestamp `json:",omitempty"`
}

// ListAliasesResponse is ListAliases' output.
type ListAliasesResponse struct {
	Aliases    []AliasListEntry
	NextMarker string `json:",omitempty"`
	Truncated  bool
}

// KeyPolicyRequest is PutKeyPolicy's and GetKeyPolicy's input.
type KeyPolicyRequest struct {
	KeyId                          string
	PolicyName                     string
	Policy                         string
	BypassPolicyLockoutSafetyCheck bool
}

// GetKeyPolicyResponse is GetKeyPolicy's output.
type GetKeyPolicyResponse struct {
	Policy     string
	PolicyName string
}

// ScheduleKeyDeletionRequest is ScheduleKeyDeletion's input.
type ScheduleKeyDeletionRequest struct {
	KeyId               string
	PendingWindowInDays int
}

// ScheduleKeyDeletionResponse is ScheduleKeyDeletion's output.
type ScheduleKeyDeletionResponse struct {
	KeyId               string
	DeletionDate        *Timestamp
	KeyState            string
	PendingWindowInDays int
}

// KeyIDResponse is the output of operations that only return the key.
type KeyIDResponse struct {
	KeyId string `json:",omitempty"`
}

// EncryptRequest is Encrypt's input.
type EncryptRequest struct {
	KeyId               string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
	GrantTokens         []string
}

// EncryptResponse is Encrypt's output.
type EncryptResponse struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

// DecryptRequest is Decrypt's input.
type DecryptRequest struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
	Recipient           *RecipientInfo
	GrantTokens         []string
}

// DecryptResponse is Decrypt's output.
type DecryptResponse struct {
	KeyId                  string
	Plaintext              []byte `json:",omitempty"`
	CiphertextForRecipient []byte `json:",omitempty"`
	EncryptionAlgorithm    string
}

// ReEncryptRequest is ReEncrypt's input.
type ReEncryptRequest struct {
	CiphertextBlob                 []byte
	SourceKeyId                    string
	SourceEncryptionContext        map[string]string
	SourceEncryptionAlgorithm      string
	DestinationKeyId               string
	DestinationEncryptionContext   map[string]string
	DestinationEncryptionAlgorithm string
}

// ReEncryptResponse is ReEncrypt's output.
type ReEncryptResponse struct {
	CiphertextBlob                 []byte
	SourceKeyId                    string
	KeyId                          string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
}

// GenerateDataKeyRequest is GenerateDataKey(WithoutPlaintext)'s input.
type GenerateDataKeyRequest struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     int
	EncryptionContext map[string]string
	Recipient         *RecipientInfo
}

// GenerateDataKeyResponse is GenerateDataKey(WithoutPlaintext)'s output.
type GenerateDataKeyResponse struct {
	CiphertextBlob         []byte
	Plaintext              []byte `json:",omitempty"`
	CiphertextForRecipient []byte `json:",omitempty"`
	KeyId                  string
}

// GenerateDataKeyPairRequest is GenerateDataKeyPair(WithoutPlaintext)'s
// input.
type GenerateDataKeyPairRequest struct {
	KeyId             string
	KeyPairSpec       string
	EncryptionContext map[string]string
	Recipient         *RecipientInfo
}

// GenerateDataKeyPairResponse is GenerateDataKeyPair(WithoutPlaintext)'s
// output.
type GenerateDataKeyPairResponse struct {
	PrivateKeyCiphertextBlob []byte
	PrivateKeyPlaintext      []byte `json:",omitempty"`
	CiphertextForRecipient   []byte `json:",omitempty"`
	PublicKey                []byte
	KeyId                    string
	KeyPairSpec              string
}

// GenerateRandomRequest is GenerateRandom's input.
type GenerateRandomRequest struct {
	NumberOfBytes    int
	CustomKeyStoreId string
	Recipient        *RecipientInfo
}

// GenerateRandomResponse is GenerateRandom's output.
type GenerateRandomResponse struct {
	Plaintext              []byte `json:",omitempty"`
	CiphertextForRecipient []byte `json:",omitempty"`
}

// SignRequest is Sign's and Verify's input.
type SignRequest struct {
	KeyId            string
	Message          []byte
	MessageType      string
	SigningAlgorithm string
	Signature        []byte // Verify only
}

// SignResponse is Sign's output.
type SignResponse struct {
	KeyId            string
	Signature        []byte
	SigningAlgorithm string
}

// VerifyResponse is Verify's output.
type VerifyResponse struct {
	KeyId            string
	SignatureValid   bool
	SigningAlgorithm string
}

// MacRequest is GenerateMac's and VerifyMac's input.
type MacRequest struct {
	KeyId        string
	Message      []byte
	MacAlgorithm string
	Mac          []byte // VerifyMac only
}

// MacResponse is GenerateMac's and VerifyMac's output.
type MacResponse struct {
	KeyId        string
	Mac          []byte `json:",omitempty"`
	MacValid     bool   `json:",omitempty"`
	MacAlgorithm string
}

// GetPublicKeyResponse is GetPublicKey's output.
type GetPublicKeyResponse struct {
	KeyId                  string
	PublicKey              []byte
	KeySpec                string
	CustomerMasterKeySpec  string
	KeyUsage               string
	EncryptionAlgorithms   []string `json:",omitempty"`
	SigningAlgorithms      []string `json:",omitempty"`
	KeyAgreementAlgorithms []string `json:",omitempty"`
}

// DeriveSharedSecretRequest is DeriveSharedSecret's input.
type DeriveSharedSecretRequest struct {
	KeyId                 string
	KeyAgreementAlgorithm string
	PublicKey             []byte
	Recipient             *RecipientInfo
}

// DeriveSharedSecretResponse is DeriveSharedSecret's output.
type DeriveSharedSecretResponse struct {
	KeyId                  string
	SharedSecret           []byte `json:",omitempty"`
	CiphertextForRecipient []byte `json:",omitempty"`
	KeyAgreementAlgorithm  string
	KeyOrigin              string
}
