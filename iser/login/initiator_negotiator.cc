#include "iser/login/initiator_negotiator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "iser/login/chap.h"
#include "iser/login/keys.h"
#include "iser/login/text_codec.h"

namespace iser::login {
namespace {

enum class Auth { kNone, kOfferedMethod, kOfferedAlgorithms, kSentResponse, kDone };

absl::Status LoginRejected(const LoginResponse& r) {
  std::string what =
      absl::StrCat("login rejected, status 0x", absl::Hex(r.status_class, absl::kZeroPad2),
                   absl::Hex(r.status_detail, absl::kZeroPad2));
  if (r.status_class == 1) return absl::UnavailableError(absl::StrCat(what, " (redirect)"));
  if (r.status_class == 3) return absl::UnavailableError(absl::StrCat(what, " (target error)"));
  switch (r.status_detail) {
    case 0x01:
      return absl::UnauthenticatedError(absl::StrCat(what, " (authentication failure)"));
    case 0x02:
      return absl::PermissionDeniedError(absl::StrCat(what, " (authorization failure)"));
    case 0x03:
    case 0x04:
      return absl::NotFoundError(absl::StrCat(what, " (target not found / removed)"));
    default:
      return absl::InvalidArgumentError(what);
  }
}

}  // namespace

struct InitiatorNegotiator::State {
  explicit State(InitiatorLoginConfig c)
      : config(std::move(c)),
        engine(Role::kInitiator, config.offer, config.rdma, config.leading, config.session_params) {
    engine.set_session_type(config.session_type);
    params = engine.Finalize();
  }

  absl::StatusOr<std::optional<InitiatorRequest>> OnResponse(const LoginResponse& r);
  absl::Status Security(const KeyValueList& keys, const LoginResponse& r, KeyValueList* out);
  void AddIdentity(KeyValueList* out) const;
  InitiatorRequest Operational(KeyValueList out);
  bool Chap() const { return !config.chap.user.empty(); }
  bool Mutual() const { return !config.mutual_chap.user.empty(); }

  InitiatorLoginConfig config;
  KeyEngine engine;
  OperationalParams params;
  uint8_t stage = kSecurityNegotiation;
  uint8_t requested_nsg = kOperationalNegotiation;
  bool requested_transit = false;
  bool done = false;
  bool failed = false;
  int exchanges = 0;
  Auth auth = Auth::kNone;
  int chap_algorithm = 0;
  uint8_t my_chap_id = 0;
  std::string my_challenge;
  uint16_t tpgt = 0;
  std::string target_alias;
  std::string redirect_address;
};

void InitiatorNegotiator::State::AddIdentity(KeyValueList* out) const {
  out->push_back({"InitiatorName", config.initiator_name});
  if (!config.initiator_alias.empty()) {
    out->push_back({"InitiatorAlias", config.initiator_alias});
  }
  if (config.session_type == SessionType::kNormal) {
    out->push_back({"TargetName", config.target_name});
  }
  out->push_back(
      {"SessionType", config.session_type == SessionType::kNormal ? "Normal" : "Discovery"});
}

InitiatorRequest InitiatorNegotiator::State::Operational(KeyValueList out) {
  engine.AppendOwnKeys(true, &out);
  InitiatorRequest req{kOperationalNegotiation, kFullFeaturePhase, true, EncodeText(out)};
  stage = kOperationalNegotiation;
  requested_nsg = req.nsg;
  requested_transit = true;
  return req;
}

absl::Status InitiatorNegotiator::State::Security(const KeyValueList& keys, const LoginResponse& r,
                                                  KeyValueList* out) {
  if (const KeyValue* am = FindKey(keys, "AuthMethod"); am != nullptr) {
    if (auth != Auth::kOfferedMethod) return absl::FailedPreconditionError("AuthMethod again");
    if (am->value == "CHAP") {
      std::string algs;
      for (int a : config.chap_algorithms) {
        if (!IsSupportedChapAlgorithm(a)) continue;
        absl::StrAppend(&algs, algs.empty() ? "" : ",", a);
      }
      out->push_back({"CHAP_A", algs});
      auth = Auth::kOfferedAlgorithms;
    } else if (am->value == "None") {
      if (Mutual()) {
        return absl::UnauthenticatedError("target refused to authenticate itself");
      }
      auth = Auth::kDone;
    } else {
      return absl::UnauthenticatedError(absl::StrCat("AuthMethod=", am->value));
    }
  }

  const KeyValue* ca = FindKey(keys, "CHAP_A");
  const KeyValue* ci = FindKey(keys, "CHAP_I");
  const KeyValue* cc = FindKey(keys, "CHAP_C");
  if (ca != nullptr || ci != nullptr || cc != nullptr) {
    if (auth != Auth::kOfferedAlgorithms || ca == nullptr || ci == nullptr || cc == nullptr) {
      return absl::UnauthenticatedError("unexpected or incomplete CHAP challenge");
    }
    absl::StatusOr<uint64_t> alg = ParseNumber(ca->value);
    absl::StatusOr<uint64_t> id = ParseNumber(ci->value);
    absl::StatusOr<std::string> challenge = ParseBinary(cc->value);
    if (!alg.ok() || !id.ok() || *id > 255 || !challenge.ok() || challenge->empty() ||
        challenge->size() > kMaxChapChallenge ||
        std::find(config.chap_algorithms.begin(), config.chap_algorithms.end(),
                  static_cast<int>(*alg)) == config.chap_algorithms.end()) {
      return absl::UnauthenticatedError("malformed CHAP challenge");
    }
    chap_algorithm = static_cast<int>(*alg);
    absl::StatusOr<std::string> resp =
        ChapResponse(chap_algorithm, static_cast<uint8_t>(*id), config.chap.secret, *challenge);
    if (!resp.ok()) return resp.status();
    out->push_back({"CHAP_N", config.chap.user});
    out->push_back({"CHAP_R", EncodeHex(*resp)});
    if (Mutual()) {
      if (config.mutual_chap.secret == config.chap.secret) {
        return absl::FailedPreconditionError("mutual CHAP secret equals the initiator's");
      }
      std::string random(1 + ChapChallengeLength(chap_algorithm), '\0');
      do {
        if (!FillRandom(config.random_bytes, reinterpret_cast<uint8_t*>(random.data()),
                        random.size())) {
          return absl::InternalError("no randomness for the CHAP challenge");
        }
      } while (random.substr(1) == *challenge);  // never reflect the target's challenge
      my_chap_id = static_cast<uint8_t>(random[0]);
      my_challenge = random.substr(1);
      out->push_back({"CHAP_I", absl::StrCat(my_chap_id)});
      out->push_back({"CHAP_C", EncodeHex(my_challenge)});
    }
    auth = Auth::kSentResponse;
  }

  const KeyValue* cn = FindKey(keys, "CHAP_N");
  const KeyValue* cr = FindKey(keys, "CHAP_R");
  if (cn != nullptr || cr != nullptr) {
    if (auth != Auth::kSentResponse || !Mutual() || cn == nullptr || cr == nullptr) {
      return absl::UnauthenticatedError("unexpected CHAP response from the target");
    }
    absl::StatusOr<std::string> got = ParseBinary(cr->value);
    absl::StatusOr<std::string> want =
        ChapResponse(chap_algorithm, my_chap_id, config.mutual_chap.secret, my_challenge);
    if (cn->value != config.mutual_chap.user || !got.ok() || !want.ok() ||
        !ChapEqual(*got, *want)) {
      return absl::UnauthenticatedError("target failed mutual CHAP");
    }
    auth = Auth::kDone;
  }
  if (auth == Auth::kSentResponse && !Mutual() && r.transit) auth = Auth::kDone;
  if (r.transit && auth != Auth::kDone) {
    return absl::UnauthenticatedError("target left the security stage before authentication");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<InitiatorRequest>> InitiatorNegotiator::State::OnResponse(
    const LoginResponse& r) {
  if (done || failed) return absl::FailedPreconditionError("login already finished");
  auto fail = [&](absl::Status s) {
    failed = true;
    return s;
  };
  if (r.status_class != 0) {
    if (absl::StatusOr<KeyValueList> kv = ParseText(r.text); kv.ok()) {
      if (const KeyValue* addr = FindKey(*kv, "TargetAddress")) redirect_address = addr->value;
    }
    return fail(LoginRejected(r));
  }
  if (++exchanges > config.max_exchanges) {
    return fail(absl::FailedPreconditionError("login does not converge"));
  }
  if (r.csg != stage) return fail(absl::FailedPreconditionError("response CSG mismatch"));
  if (r.transit && (!requested_transit || r.nsg <= stage || r.nsg > requested_nsg || r.nsg == 2)) {
    return fail(absl::FailedPreconditionError("invalid stage transition by the target"));
  }
  absl::StatusOr<KeyValueList> keys = ParseText(r.text);
  if (!keys.ok()) return fail(keys.status());

  KeyValueList out;
  for (const KeyValue& kv : *keys) {
    if (kv.key == "TargetPortalGroupTag") {
      absl::StatusOr<uint64_t> v = ParseNumber(kv.value);
      if (!v.ok() || *v > 65535) return fail(absl::InvalidArgumentError("bad TPGT"));
      tpgt = static_cast<uint16_t>(*v);
    } else if (kv.key == "TargetAlias") {
      target_alias = kv.value;
    } else if (IsIdentityKey(kv.key) || IsSecurityKey(kv.key) ||
               FindOperationalKey(kv.key) != nullptr) {
      continue;
    } else if (kv.value != kNotUnderstood && kv.value != kIrrelevant && kv.value != kReject) {
      out.push_back({kv.key, std::string(kNotUnderstood)});
    }
  }

  if (stage == kSecurityNegotiation) {
    for (const KeyValue& kv : *keys) {
      if (FindOperationalKey(kv.key) != nullptr) {
        return fail(absl::FailedPreconditionError("operational key in the security stage"));
      }
    }
    if (absl::Status s = Security(*keys, r, &out); !s.ok()) return fail(s);
    if (r.transit) {
      stage = r.nsg;
      if (stage == kFullFeaturePhase) {
        done = true;
        params = engine.Finalize();
        return std::optional<InitiatorRequest>();
      }
      return std::optional<InitiatorRequest>(Operational(std::move(out)));
    }
    // Continue the security stage; ask to leave it once our part is done.
    requested_transit = auth == Auth::kSentResponse || auth == Auth::kDone;
    requested_nsg = kOperationalNegotiation;
    return std::optional<InitiatorRequest>(
        InitiatorRequest{kSecurityNegotiation, requested_nsg, requested_transit, EncodeText(out)});
  }

  for (const KeyValue& kv : *keys) {
    if (IsSecurityKey(kv.key)) {
      return fail(absl::FailedPreconditionError("security key in the operational stage"));
    }
  }
  if (absl::Status s = engine.ProcessPeerKeys(*keys, false, &out); !s.ok()) return fail(s);
  params = engine.Finalize();
  if (r.transit) {
    done = true;
    return std::optional<InitiatorRequest>();
  }
  return std::optional<InitiatorRequest>(Operational(std::move(out)));
}

InitiatorNegotiator::InitiatorNegotiator(InitiatorLoginConfig config)
    : state_(std::make_unique<State>(std::move(config))) {}

InitiatorNegotiator::~InitiatorNegotiator() = default;

InitiatorRequest InitiatorNegotiator::Start() {
  State& s = *state_;
  KeyValueList out;
  s.AddIdentity(&out);
  if (s.Chap() || s.Mutual()) {
    s.auth = Auth::kOfferedMethod;
    out.push_back({"AuthMethod", s.Mutual() ? "CHAP" : "CHAP,None"});
    s.stage = kSecurityNegotiation;
    s.requested_nsg = kOperationalNegotiation;
    s.requested_transit = true;
    return InitiatorRequest{kSecurityNegotiation, kOperationalNegotiation, true, EncodeText(out)};
  }
  s.auth = Auth::kDone;
  return s.Operational(std::move(out));
}

absl::StatusOr<std::optional<InitiatorRequest>> InitiatorNegotiator::OnResponse(
    const LoginResponse& response) {
  return state_->OnResponse(response);
}

bool InitiatorNegotiator::full_feature() const { return state_->done; }
const OperationalParams& InitiatorNegotiator::params() const { return state_->params; }
uint16_t InitiatorNegotiator::target_portal_group_tag() const { return state_->tpgt; }
const std::string& InitiatorNegotiator::target_alias() const { return state_->target_alias; }
const std::string& InitiatorNegotiator::redirect_address() const {
  return state_->redirect_address;
}

}  // namespace iser::login
