// Target side of login (RFC 7143 sec 6 and 11.12-11.13): stage machine, identity and
// ACL checks, AuthMethod / CHAP (sec 12.1.3) and operational keys via KeyEngine.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "iser/login/chap.h"
#include "iser/login/keys.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"

namespace iser::login {
namespace {

// Status-Class / Status-Detail pairs (sec 11.13.5).
constexpr uint8_t kInitiatorError = 2;
constexpr uint8_t kTargetError = 3;
constexpr uint8_t kDetailMisc = 0x00;
constexpr uint8_t kDetailAuthFailure = 0x01;
constexpr uint8_t kDetailAuthorization = 0x02;
constexpr uint8_t kDetailNotFound = 0x03;
constexpr uint8_t kDetailMissingParameter = 0x07;
constexpr uint8_t kDetailSessionTypeUnsupported = 0x09;
constexpr uint8_t kDetailInvalidDuringLogin = 0x0b;

enum class Auth { kStart, kNone, kChapWaitAlgorithm, kChapWaitResponse, kDone };

struct Failure {
  uint8_t status_class;
  uint8_t status_detail;
};

}  // namespace

struct TargetNegotiator::State {
  State(TargetLoginConfig c, bool lead, std::optional<OperationalParams> session)
      : config(std::move(c)),
        leading(lead),
        engine(Role::kTarget, config.offer, config.rdma_capable, lead, session) {
    params = engine.Finalize();
  }

  LoginResponse Step(const LoginRequest& request);
  std::optional<Failure> Identity(const KeyValueList& keys, KeyValueList* out);
  std::optional<Failure> IdentityChecks(const KeyValueList& keys, KeyValueList* out);
  std::optional<Failure> Security(const KeyValueList& keys, bool* progressed, KeyValueList* out);
  std::optional<Failure> ChapResponseCheck(const KeyValueList& keys, KeyValueList* out);
  const ChapCredentials& Chap() const { return node ? node->chap : config.discovery_chap; }
  const ChapCredentials& MutualChap() const {
    return node ? node->mutual_chap : config.discovery_mutual_chap;
  }
  bool ChapRequired() const { return !Chap().user.empty(); }
  bool AuthComplete() const {
    return auth == Auth::kNone || auth == Auth::kDone || (auth == Auth::kStart && !ChapRequired());
  }

  TargetLoginConfig config;
  bool leading;
  KeyEngine engine;
  OperationalParams params;

  bool first_pdu = true;
  bool first_operational_pdu = true;
  uint8_t stage = kSecurityNegotiation;
  bool done = false;
  std::optional<LoginResponse> failed;

  std::string initiator_name;
  std::string initiator_alias;
  std::string target_name;
  SessionType session_type = SessionType::kNormal;
  std::optional<TargetNodeInfo> node;

  Auth auth = Auth::kStart;
  int chap_algorithm = 0;
  uint8_t chap_id = 0;
  std::string chap_challenge;
};

std::optional<Failure> TargetNegotiator::State::Identity(const KeyValueList& keys,
                                                         KeyValueList* out) {
  std::optional<Failure> f = IdentityChecks(keys, out);
  // Keys only a target may send are refused, unless we declare the same key ourselves in
  // this PDU (a key appears at most once per PDU).
  for (const char* target_only : {"TargetAlias", "TargetAddress", "TargetPortalGroupTag"}) {
    if (FindKey(keys, target_only) != nullptr && FindKey(*out, target_only) == nullptr) {
      out->push_back({target_only, std::string(kReject)});
    }
  }
  return f;
}

std::optional<Failure> TargetNegotiator::State::IdentityChecks(const KeyValueList& keys,
                                                               KeyValueList* out) {
  const KeyValue* iname = FindKey(keys, "InitiatorName");
  const KeyValue* tname = FindKey(keys, "TargetName");
  const KeyValue* stype = FindKey(keys, "SessionType");
  const KeyValue* alias = FindKey(keys, "InitiatorAlias");
  if (alias != nullptr) initiator_alias = alias->value;
  if (!first_pdu) {
    // Names and SessionType may be repeated (libiscsi does after CHAP) but not changed.
    if ((iname != nullptr && iname->value != initiator_name) ||
        (tname != nullptr && session_type == SessionType::kNormal && tname->value != target_name)) {
      return Failure{kInitiatorError, kDetailMisc};
    }
    if (stype != nullptr &&
        stype->value != (session_type == SessionType::kNormal ? "Normal" : "Discovery")) {
      return Failure{kInitiatorError, kDetailMisc};
    }
    return std::nullopt;
  }

  if (stype != nullptr) {
    if (stype->value == "Discovery") {
      session_type = SessionType::kDiscovery;
    } else if (stype->value != "Normal") {
      return Failure{kInitiatorError, kDetailSessionTypeUnsupported};
    }
  }
  engine.set_session_type(session_type);
  if (iname == nullptr || iname->value.empty()) {
    return Failure{kInitiatorError, kDetailMissingParameter};
  }
  initiator_name = iname->value;
  if (session_type == SessionType::kDiscovery) return std::nullopt;

  if (tname == nullptr || tname->value.empty()) {
    return Failure{kInitiatorError, kDetailMissingParameter};
  }
  target_name = tname->value;
  if (config.lookup_target) node = config.lookup_target(target_name);
  if (!node.has_value()) return Failure{kInitiatorError, kDetailNotFound};
  const std::vector<std::string>& acl = node->allowed_initiators;
  if (!acl.empty() && std::find(acl.begin(), acl.end(), initiator_name) == acl.end()) {
    return Failure{kInitiatorError, kDetailAuthorization};
  }
  // sec 13.9: the tag goes in the first response when TargetName was given.
  out->push_back({"TargetPortalGroupTag", absl::StrCat(config.target_portal_group_tag)});
  if (!node->alias.empty()) out->push_back({"TargetAlias", node->alias});
  return std::nullopt;
}

std::optional<Failure> TargetNegotiator::State::Security(const KeyValueList& keys, bool* progressed,
                                                         KeyValueList* out) {
  if (const KeyValue* am = FindKey(keys, "AuthMethod"); am != nullptr) {
    absl::StatusOr<std::vector<std::string_view>> offered = ParseList(am->value);
    const std::string_view wanted = ChapRequired() ? "CHAP" : "None";
    bool acceptable =
        offered.ok() && std::find(offered->begin(), offered->end(), wanted) != offered->end();
    if (auth != Auth::kStart) {
      // A repeat is tolerated only if it still allows what was agreed.
      if (!acceptable) return Failure{kInitiatorError, kDetailMisc};
      out->push_back({"AuthMethod", std::string(wanted)});
    } else if (!acceptable) {
      out->push_back({"AuthMethod", std::string(kReject)});
      return Failure{kInitiatorError, kDetailAuthFailure};
    } else {
      out->push_back({"AuthMethod", std::string(wanted)});
      auth = ChapRequired() ? Auth::kChapWaitAlgorithm : Auth::kNone;
      *progressed = true;
    }
  }

  if (const KeyValue* ca = FindKey(keys, "CHAP_A"); ca != nullptr) {
    if (auth != Auth::kChapWaitAlgorithm) return Failure{kInitiatorError, kDetailAuthFailure};
    absl::StatusOr<std::vector<std::string_view>> algs = ParseList(ca->value);
    if (algs.ok()) {
      for (std::string_view a : *algs) {
        absl::StatusOr<uint64_t> n = ParseNumber(a);
        if (!n.ok() || *n > 255) continue;
        int alg = static_cast<int>(*n);
        const std::vector<int>& allowed = config.chap_algorithms;
        if (IsSupportedChapAlgorithm(alg) &&
            std::find(allowed.begin(), allowed.end(), alg) != allowed.end()) {
          chap_algorithm = alg;
          break;
        }
      }
    }
    if (chap_algorithm == 0) {
      out->push_back({"CHAP_A", std::string(kReject)});
      return Failure{kInitiatorError, kDetailAuthFailure};
    }
    std::string random(1 + ChapChallengeLength(chap_algorithm), '\0');
    if (!FillRandom(config.random_bytes, reinterpret_cast<uint8_t*>(random.data()),
                    random.size())) {
      return Failure{kTargetError, kDetailMisc};
    }
    chap_id = static_cast<uint8_t>(random[0]);
    chap_challenge = random.substr(1);
    out->push_back({"CHAP_A", absl::StrCat(chap_algorithm)});
    out->push_back({"CHAP_I", absl::StrCat(chap_id)});
    out->push_back({"CHAP_C", EncodeHex(chap_challenge)});
    auth = Auth::kChapWaitResponse;
    *progressed = true;
  }

  bool has_response = FindKey(keys, "CHAP_N") != nullptr || FindKey(keys, "CHAP_R") != nullptr;
  bool has_challenge = FindKey(keys, "CHAP_I") != nullptr || FindKey(keys, "CHAP_C") != nullptr;
  if (has_response || has_challenge) {
    if (auth != Auth::kChapWaitResponse) return Failure{kInitiatorError, kDetailAuthFailure};
    if (std::optional<Failure> f = ChapResponseCheck(keys, out)) return f;
    auth = Auth::kDone;
    *progressed = true;
  }
  return std::nullopt;
}

std::optional<Failure> TargetNegotiator::State::ChapResponseCheck(const KeyValueList& keys,
                                                                  KeyValueList* out) {
  const KeyValue* n = FindKey(keys, "CHAP_N");
  const KeyValue* r = FindKey(keys, "CHAP_R");
  if (n == nullptr || r == nullptr) return Failure{kInitiatorError, kDetailMissingParameter};
  const ChapCredentials& cred = Chap();
  if (n->value != cred.user) return Failure{kInitiatorError, kDetailAuthFailure};
  absl::StatusOr<std::string> got = ParseBinary(r->value);
  absl::StatusOr<std::string> want =
      ChapResponse(chap_algorithm, chap_id, cred.secret, chap_challenge);
  if (!got.ok() || !want.ok() || !ChapEqual(*got, *want)) {
    return Failure{kInitiatorError, kDetailAuthFailure};
  }

  const KeyValue* ci = FindKey(keys, "CHAP_I");
  const KeyValue* cc = FindKey(keys, "CHAP_C");
  if (ci == nullptr && cc == nullptr) return std::nullopt;  // one-way CHAP
  if (ci == nullptr || cc == nullptr) return Failure{kInitiatorError, kDetailMissingParameter};
  const ChapCredentials& mutual = MutualChap();
  if (mutual.user.empty()) return Failure{kInitiatorError, kDetailAuthFailure};
  // sec 12.1.3: the same secret must not authenticate both directions.
  if (mutual.secret == cred.secret) return Failure{kInitiatorError, kDetailAuthFailure};
  absl::StatusOr<uint64_t> id = ParseNumber(ci->value);
  absl::StatusOr<std::string> challenge = ParseBinary(cc->value);
  if (!id.ok() || *id > 255 || !challenge.ok() || challenge->empty() ||
      challenge->size() > kMaxChapChallenge) {
    return Failure{kInitiatorError, kDetailAuthFailure};
  }
  // A reflected challenge (our own sent back) means someone wants us to compute the
  // answer for them (sec 12.1.3).
  if (*challenge == chap_challenge) return Failure{kInitiatorError, kDetailAuthFailure};
  absl::StatusOr<std::string> answer =
      ChapResponse(chap_algorithm, static_cast<uint8_t>(*id), mutual.secret, *challenge);
  if (!answer.ok()) return Failure{kTargetError, kDetailMisc};
  out->push_back({"CHAP_N", mutual.user});
  out->push_back({"CHAP_R", EncodeHex(*answer)});
  return std::nullopt;
}

LoginResponse TargetNegotiator::State::Step(const LoginRequest& request) {
  LoginResponse resp;
  resp.csg = request.csg;
  resp.nsg = request.csg;
  KeyValueList out;
  auto fail = [&](Failure f) {
    resp.transit = false;
    resp.nsg = resp.csg;
    resp.status_class = f.status_class;
    resp.status_detail = f.status_detail;
    resp.text = EncodeText(out);
    resp.full_feature = false;
    failed = resp;
    return resp;
  };

  if (failed.has_value()) return *failed;
  if (done) return fail({kInitiatorError, kDetailInvalidDuringLogin});
  if (request.csg != kSecurityNegotiation && request.csg != kOperationalNegotiation) {
    return fail({kInitiatorError, kDetailMisc});
  }
  if (!first_pdu && request.csg != stage) return fail({kInitiatorError, kDetailMisc});
  if (request.transit && (request.nsg <= request.csg || (request.nsg != kOperationalNegotiation &&
                                                         request.nsg != kFullFeaturePhase))) {
    return fail({kInitiatorError, kDetailMisc});
  }
  absl::StatusOr<KeyValueList> keys = ParseText(request.text);
  if (!keys.ok()) return fail({kInitiatorError, kDetailMisc});

  if (std::optional<Failure> f = Identity(*keys, &out)) return fail(*f);
  first_pdu = false;
  stage = request.csg;

  bool security = request.csg == kSecurityNegotiation;
  for (const KeyValue& kv : *keys) {
    if (IsIdentityKey(kv.key)) continue;
    if (IsSecurityKey(kv.key)) {
      if (!security) return fail({kInitiatorError, kDetailMisc});
      continue;
    }
    if (FindOperationalKey(kv.key) != nullptr) {
      if (security) return fail({kInitiatorError, kDetailMisc});
      continue;
    }
    // SendTargets belongs to full feature phase; everything else (X-, X#, typos) is
    // simply not understood (sec 6.2).
    out.push_back({kv.key, std::string(kv.key == "SendTargets" ? kReject : kNotUnderstood)});
  }

  if (security) {
    bool progressed = false;
    if (std::optional<Failure> f = Security(*keys, &progressed, &out)) return fail(*f);
    if (request.transit) {
      if (AuthComplete()) {
        resp.transit = true;
        resp.nsg = request.nsg;
        // Skipping the operational stage would lose our declarations / proposals.
        if (resp.nsg == kFullFeaturePhase && engine.HasNonDefaultOwnKeys()) {
          resp.nsg = kOperationalNegotiation;
        }
      } else if (!progressed) {
        return fail({kInitiatorError, kDetailAuthFailure});
      }
    }
  } else {
    if (first_operational_pdu && !AuthComplete()) {
      return fail({kInitiatorError, kDetailAuthFailure});
    }
    if (absl::Status s = engine.ProcessPeerKeys(*keys, first_operational_pdu, &out); !s.ok()) {
      return fail({kInitiatorError, kDetailMisc});
    }
    first_operational_pdu = false;
    // Propose once the initiator says it is done (T=1) or waits for us (empty PDU).
    engine.AppendOwnKeys(request.transit || keys->empty(), &out);
    if (request.transit && !engine.AwaitingAnswers() && !engine.HasOwnKeysToSend(false)) {
      resp.transit = true;
      resp.nsg = request.nsg;
    }
  }

  params = engine.Finalize();
  if (resp.transit) {
    stage = resp.nsg;
    if (resp.nsg == kFullFeaturePhase) {
      resp.full_feature = true;
      done = true;
    }
  }
  resp.text = EncodeText(out);
  return resp;
}

TargetNegotiator::TargetNegotiator(TargetLoginConfig config, bool leading,
                                   std::optional<OperationalParams> session_params)
    : state_(std::make_unique<State>(std::move(config), leading, std::move(session_params))) {}

TargetNegotiator::~TargetNegotiator() = default;

LoginResponse TargetNegotiator::Step(const LoginRequest& request) { return state_->Step(request); }

const OperationalParams& TargetNegotiator::params() const { return state_->params; }
SessionType TargetNegotiator::session_type() const { return state_->session_type; }
const std::string& TargetNegotiator::initiator_name() const { return state_->initiator_name; }
const std::string& TargetNegotiator::initiator_alias() const { return state_->initiator_alias; }
const std::string& TargetNegotiator::target_name() const { return state_->target_name; }

}  // namespace iser::login
