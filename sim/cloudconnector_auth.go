package sim

// This file authenticates callers of the cloud-connector emulation as
// cloud-connector's middleware does: an x-rh-identity header when there is
// one, the pre-shared-key headers otherwise.

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
)

// Headers a cloud-connector caller identifies itself with.
const (
	headerIdentity = "x-rh-identity"
	headerClientID = "x-rh-cloud-connector-client-id"
	headerOrgID    = "x-rh-cloud-connector-org-id"
	headerAccount  = "x-rh-cloud-connector-account"
	headerPSK      = "x-rh-cloud-connector-psk"
)

// authFailed is the plain-text body of cloud-connector's 401.
const authFailed = "Authentication failed"

// tenantHeader says which PSK header must name the caller's tenant: the
// account for v1 routes, the org id for v2 ones.
type tenantHeader int

const (
	tenantAccount tenantHeader = iota
	tenantOrg
)

// ccPrincipal is the caller, as the handlers see it.
type ccPrincipal struct {
	account, orgID string
}

// authenticate returns the caller of r, or writes the refusal and returns
// false. An x-rh-identity header is checked whatever the mode. Without
// one, the PSK headers are required when the sim has a PSK (any client id
// with that key is accepted); without a PSK every caller is accepted, its
// tenant taken from the PSK headers when given, else the sim's own.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, rt ccRoute) (ccPrincipal, bool) {
	if raw := r.Header.Get(headerIdentity); raw != "" {
		id, problem := decodeCCIdentity(raw)
		if problem != "" {
			http.Error(w, http.StatusText(http.StatusBadRequest)+": "+problem, http.StatusBadRequest)
			return ccPrincipal{}, false
		}
		if rt.associates && id.typ != "Associate" {
			http.Error(w, authFailed, http.StatusUnauthorized)
			return ccPrincipal{}, false
		}
		if id.orgID == "" {
			// cloud-connector's handlers dereference a missing principal
			// and panic: the caller gets no answer.
			panic(http.ErrAbortHandler)
		}
		return ccPrincipal{account: id.account, orgID: id.orgID}, true
	}
	h := r.Header
	if s.PSK == "" {
		return ccPrincipal{account: orDefault(h.Get(headerAccount), s.Account), orgID: orDefault(h.Get(headerOrgID), s.OrgID)}, true
	}
	missing := h.Get(headerClientID) == "" || h.Get(headerPSK) == "" ||
		rt.tenant == tenantOrg && h.Get(headerOrgID) == "" ||
		rt.tenant == tenantAccount && h.Get(headerAccount) == ""
	if missing || h.Get(headerPSK) != s.PSK {
		http.Error(w, authFailed, http.StatusUnauthorized)
		return ccPrincipal{}, false
	}
	return ccPrincipal{account: h.Get(headerAccount), orgID: h.Get(headerOrgID)}, true
}

// ccIdentity is what the sim reads of an x-rh-identity.
type ccIdentity struct {
	account, orgID, typ string
}

// decodeCCIdentity decodes and checks an x-rh-identity header, returning
// what is wrong with it in the platform middleware's words.
func decodeCCIdentity(raw string) (ccIdentity, string) {
	// The types bear the platform's names, and its fields that are not
	// strings, so that a value of the wrong type is refused in the same
	// words ("… into Go struct field Identity.identity.org_id …").
	type Internal struct {
		OrgID       string  `json:"org_id"`
		AuthTime    float32 `json:"auth_time"`
		CrossAccess bool    `json:"cross_access"`
	}
	type Identity struct {
		AccountNumber string   `json:"account_number"`
		OrgID         string   `json:"org_id"`
		Internal      Internal `json:"internal"`
		Type          string   `json:"type"`
		AuthType      string   `json:"auth_type"`
	}
	type ServiceDetails struct {
		IsEntitled bool `json:"is_entitled"`
		IsTrial    bool `json:"is_trial"`
	}
	type XRHID struct {
		Identity     Identity                  `json:"identity"`
		Entitlements map[string]ServiceDetails `json:"entitlements"`
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return ccIdentity{}, "unable to b64 decode x-rh-identity header"
	}
	var x XRHID
	if err := json.Unmarshal(b, &x); err != nil {
		return ccIdentity{}, "x-rh-identity header does not contain valid JSON: " + err.Error()
	}
	id := ccIdentity{account: x.Identity.AccountNumber, orgID: x.Identity.OrgID, typ: x.Identity.Type}
	if id.orgID == "" {
		id.orgID = x.Identity.Internal.OrgID
	}
	switch {
	case (id.typ == "Associate" || id.typ == "X509") && id.account == "":
	case id.orgID == "":
		return ccIdentity{}, "x-rh-identity header has an invalid or missing org_id"
	case id.typ == "":
		return ccIdentity{}, "x-rh-identity header is missing type"
	}
	return id, ""
}
