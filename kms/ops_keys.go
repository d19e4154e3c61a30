package kms

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Key management operations.

// Deletion windows (API reference, ScheduleKeyDeletion
// PendingWindowInDays: 7..30, default 30).
const (
	minDeletionDays     = 7
	maxDeletionDays     = 30
	defaultDeletionDays = 30
)

// List limits (API reference, ListKeys Limit: 1..1000, default 100).
const (
	maxListLimit     = 1000
	defaultListLimit = 100
)

// CreateKey implements TrentService.CreateKey.
func (s *Service) CreateKey(req *CreateKeyRequest) (*KeyMetadataResponse, error) {
	switch {
	case req.MultiRegion:
		return nil, errorf(ErrUnsupportedOperation, "CreateKey: multi-region keys are not implemented by nitrovm's local KMS")
	case req.CustomKeyStoreId != "" || req.XksKeyId != "":
		return nil, errorf(ErrUnsupportedOperation, "CreateKey: custom key stores (CloudHSM, external) are not implemented by nitrovm's local KMS")
	case req.Origin != "" && req.Origin != "AWS_KMS":
		return nil, errorf(ErrUnsupportedOperation, "CreateKey: Origin %s is not implemented by nitrovm's local KMS (only AWS_KMS)", req.Origin)
	}
	spec := req.KeySpec
	if spec == "" {
		spec = req.CustomerMasterKeySpec
	}
	if spec == "" {
		spec = SpecSymmetricDefault
	}
	usage, ok := validUsage(spec, req.KeyUsage)
	if !ok {
		return nil, errorf(ErrValidation, "KeySpec %s with KeyUsage %s is not supported (key specs: SYMMETRIC_DEFAULT, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, HMAC_256)", spec, req.KeyUsage)
	}
	policy := req.Policy
	if policy == "" {
		policy = DefaultPolicy(s.account)
	}
	if _, err := ParsePolicy(policy); err != nil {
		return nil, err
	}
	material, err := newMaterial(s.rand, spec)
	if err != nil {
		return nil, errorf(ErrInternal, "generate key: %v", err)
	}
	id, err := s.newKeyID()
	if err != nil {
		return nil, errorf(ErrInternal, "key ID: %v", err)
	}
	k := &key{keyRecord: keyRecord{
		KeyID: id, Arn: s.arn("key", id), Description: req.Description,
		KeySpec: spec, KeyUsage: usage, State: StateEnabled,
		Created: s.now().UTC(), Policy: policy, Material: material,
	}}
	if err := k.load(); err != nil {
		return nil, errorf(ErrInternal, "%v", err)
	}
	err = s.store.update(func() (func(), error) {
		s.store.keys[id] = k
		return func() { delete(s.store.keys, id) }, nil
	})
	if err != nil {
		return nil, err
	}
	return &KeyMetadataResponse{KeyMetadata: k.metadata(s.account)}, nil
}

// DescribeKey implements TrentService.DescribeKey.
func (s *Service) DescribeKey(req *KeyIDRequest) (*KeyMetadataResponse, error) {
	k, err := s.lookup(req.KeyId)
	if err != nil {
		return nil, err
	}
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	return &KeyMetadataResponse{KeyMetadata: k.metadata(s.account)}, nil
}

// listWindow applies Limit and Marker (an index) to n entries.
func listWindow(n int, req *ListRequest) (start, end int, next string, err error) {
	limit := req.Limit
	if limit == 0 {
		limit = defaultListLimit
	}
	if limit < 1 || limit > maxListLimit {
		return 0, 0, "", errorf(ErrValidation, "Limit %d is outside 1..%d", limit, maxListLimit)
	}
	if req.Marker != "" {
		if start, err = strconv.Atoi(req.Marker); err != nil || start < 0 || start > n {
			return 0, 0, "", errorf(ErrInvalidMarker, "Marker %q is not valid", req.Marker)
		}
	}
	end = min(start+limit, n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

// ListKeys implements TrentService.ListKeys.
func (s *Service) ListKeys(req *ListRequest) (*ListKeysResponse, error) {
	s.store.refresh()
	s.store.mu.RLock()
	var all []KeyListEntry
	for _, k := range s.store.keys {
		if k.State == StatePendingDeletion && !s.now().Before(k.DeletionDate) {
			continue
		}
		all = append(all, KeyListEntry{KeyId: k.KeyID, KeyArn: k.Arn})
	}
	s.store.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].KeyId < all[j].KeyId })
	start, end, next, err := listWindow(len(all), req)
	if err != nil {
		return nil, err
	}
	return &ListKeysResponse{Keys: append([]KeyListEntry{}, all[start:end]...), NextMarker: next, Truncated: next != ""}, nil
}

// CreateAlias implements TrentService.CreateAlias.
func (s *Service) CreateAlias(req *CreateAliasRequest) (*struct{}, error) {
	name := req.AliasName
	if !strings.HasPrefix(name, "alias/") || len(name) == len("alias/") || strings.HasPrefix(name, "alias/aws/") || len(name) > 256 {
		return nil, errorf(ErrInvalidAliasName, "Alias %q must begin with alias/ followed by a name, and must not begin with alias/aws/", name)
	}
	if strings.HasPrefix(req.TargetKeyId, "alias/") || strings.Contains(req.TargetKeyId, ":alias/") {
		return nil, errorf(ErrValidation, "TargetKeyId must be a key ID or key ARN, not an alias")
	}
	err := s.store.update(func() (func(), error) {
		k, err := s.lookupLocked(req.TargetKeyId)
		if err != nil {
			return nil, err
		}
		if _, exists := s.store.aliases[name]; exists {
			return nil, errorf(ErrAlreadyExists, "An alias with the name %s already exists", s.aliasArn(name))
		}
		s.store.aliases[name] = aliasRecord{Name: name, KeyID: k.KeyID, Created: s.now().UTC()}
		return func() { delete(s.store.aliases, name) }, nil
	})
	if err != nil {
		return nil, err
	}
	return &struct{}{}, nil
}

// DeleteAliasRequest is DeleteAlias's input.
type DeleteAliasRequest struct{ AliasName string }

// DeleteAlias implements TrentService.DeleteAlias.
func (s *Service) DeleteAlias(req *DeleteAliasRequest) (*struct{}, error) {
	err := s.store.update(func() (func(), error) {
		a, ok := s.store.aliases[req.AliasName]
		if !ok {
			return nil, errorf(ErrNotFound, "Alias %s is not found.", req.AliasName)
		}
		delete(s.store.aliases, req.AliasName)
		return func() { s.store.aliases[req.AliasName] = a }, nil
	})
	if err != nil {
		return nil, err
	}
	return &struct{}{}, nil
}

// ListAliases implements TrentService.ListAliases.
func (s *Service) ListAliases(req *ListRequest) (*ListAliasesResponse, error) {
	s.store.refresh()
	s.store.mu.RLock()
	target := ""
	if req.KeyId != "" {
		k, err := s.lookupLocked(req.KeyId)
		if err != nil {
			s.store.mu.RUnlock()
			return nil, err
		}
		target = k.KeyID
	}
	var all []AliasListEntry
	for _, a := range s.store.aliases {
		if target != "" && a.KeyID != target {
			continue
		}
		all = append(all, AliasListEntry{
			AliasName: a.Name, AliasArn: s.aliasArn(a.Name), TargetKeyId: a.KeyID,
			CreationDate: epoch(a.Created), LastUpdatedDate: epoch(a.Created),
		})
	}
	s.store.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].AliasName < all[j].AliasName })
	start, end, next, err := listWindow(len(all), req)
	if err != nil {
		return nil, err
	}
	return &ListAliasesResponse{Aliases: append([]AliasListEntry{}, all[start:end]...), NextMarker: next, Truncated: next != ""}, nil
}

// checkPolicyName accepts the only key policy name, "default".
func checkPolicyName(name string) error {
	if name != "" && name != "default" {
		return errorf(ErrNotFound, "Policy %q does not exist: a key has one policy, named default", name)
	}
	return nil
}

// mutate runs f on the key id names, under the write lock, after checking
// action against the key policy, and persists the result; f returns an
// undo function for when persisting fails.
func (s *Service) mutate(id, action string, f func(k *key) (undo func(), err error)) (*key, error) {
	var k *key
	err := s.store.update(func() (func(), error) {
		var err error
		if k, err = s.lookupLocked(id); err != nil {
			return nil, err
		}
		if ok, why := k.policy.Allows(RequestContext{Action: "kms:" + action, Resource: k.Arn}); !ok {
			return nil, errorf(ErrAccessDenied, "User: %s is not authorized to perform: kms:%s on resource: %s because %s", s.caller(), action, k.Arn, why)
		}
		return f(k)
	})
	return k, err
}

// PutKeyPolicy implements TrentService.PutKeyPolicy.
func (s *Service) PutKeyPolicy(req *KeyPolicyRequest) (*struct{}, error) {
	if err := checkPolicyName(req.PolicyName); err != nil {
		return nil, err
	}
	p, err := ParsePolicy(req.Policy)
	if err != nil {
		return nil, err
	}
	_, err = s.mutate(req.KeyId, "PutKeyPolicy", func(k *key) (func(), error) {
		oldDoc, oldP := k.Policy, k.policy
		k.Policy, k.policy = req.Policy, p
		return func() { k.Policy, k.policy = oldDoc, oldP }, nil
	})
	if err != nil {
		return nil, err
	}
	return &struct{}{}, nil
}

// GetKeyPolicy implements TrentService.GetKeyPolicy.
func (s *Service) GetKeyPolicy(req *KeyPolicyRequest) (*GetKeyPolicyResponse, error) {
	if err := checkPolicyName(req.PolicyName); err != nil {
		return nil, err
	}
	s.store.refresh()
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	k, err := s.lookupLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	if ok, why := k.policy.Allows(RequestContext{Action: "kms:GetKeyPolicy", Resource: k.Arn}); !ok {
		return nil, errorf(ErrAccessDenied, "User: %s is not authorized to perform: kms:GetKeyPolicy on resource: %s because %s", s.caller(), k.Arn, why)
	}
	return &GetKeyPolicyResponse{Policy: k.Policy, PolicyName: "default"}, nil
}

// setState is EnableKey's and DisableKey's body.
func (s *Service) setState(id, action, to string) (*struct{}, error) {
	_, err := s.mutate(id, action, func(k *key) (func(), error) {
		if k.State == StatePendingDeletion {
			return nil, errorf(ErrInvalidState, "%s is pending deletion.", k.Arn)
		}
		old := k.State
		k.State = to
		return func() { k.State = old }, nil
	})
	if err != nil {
		return nil, err
	}
	return &struct{}{}, nil
}

// EnableKey implements TrentService.EnableKey.
func (s *Service) EnableKey(req *KeyIDRequest) (*struct{}, error) {
	return s.setState(req.KeyId, "EnableKey", StateEnabled)
}

// DisableKey implements TrentService.DisableKey.
func (s *Service) DisableKey(req *KeyIDRequest) (*struct{}, error) {
	return s.setState(req.KeyId, "DisableKey", StateDisabled)
}

// ScheduleKeyDeletion implements TrentService.ScheduleKeyDeletion. The key
// becomes unusable at once and disappears once the window has passed.
func (s *Service) ScheduleKeyDeletion(req *ScheduleKeyDeletionRequest) (*ScheduleKeyDeletionResponse, error) {
	days := req.PendingWindowInDays
	if days == 0 {
		days = defaultDeletionDays
	}
	if days < minDeletionDays || days > maxDeletionDays {
		return nil, errorf(ErrValidation, "PendingWindowInDays %d is outside %d..%d", days, minDeletionDays, maxDeletionDays)
	}
	k, err := s.mutate(req.KeyId, "ScheduleKeyDeletion", func(k *key) (func(), error) {
		if k.State == StatePendingDeletion {
			return nil, errorf(ErrInvalidState, "%s is pending deletion.", k.Arn)
		}
		oldState, oldDate := k.State, k.DeletionDate
		k.State = StatePendingDeletion
		k.DeletionDate = s.now().UTC().Add(time.Duration(days) * 24 * time.Hour)
		return func() { k.State, k.DeletionDate = oldState, oldDate }, nil
	})
	if err != nil {
		return nil, err
	}
	return &ScheduleKeyDeletionResponse{KeyId: k.Arn, DeletionDate: epoch(k.DeletionDate), KeyState: StatePendingDeletion, PendingWindowInDays: days}, nil
}

// CancelKeyDeletion implements TrentService.CancelKeyDeletion: the key
// returns Disabled, as in AWS KMS.
func (s *Service) CancelKeyDeletion(req *KeyIDRequest) (*KeyIDResponse, error) {
	k, err := s.mutate(req.KeyId, "CancelKeyDeletion", func(k *key) (func(), error) {
		if k.State != StatePendingDeletion {
			return nil, errorf(ErrInvalidState, "%s is not pending deletion.", k.Arn)
		}
		oldDate := k.DeletionDate
		k.State, k.DeletionDate = StateDisabled, time.Time{}
		return func() { k.State, k.DeletionDate = StatePendingDeletion, oldDate }, nil
	})
	if err != nil {
		return nil, err
	}
	return &KeyIDResponse{KeyId: k.Arn}, nil
}
