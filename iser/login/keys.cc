#include "iser/login/keys.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"

namespace iser::login {
namespace {

using P = OperationalParams;
constexpr uint64_t kMaxDsl = (1u << 24) - 1;  // 2^24 - 1

// RFC 7143 sec 13 (and 13.26 for the obsolete markers), RFC 7144 sec 2.1, RFC 7145 sec 6.
constexpr std::array kKeys = {
    KeyDef{.name = "RDMAExtensions",
           .kind = KeyKind::kBoolAnd,
           .leading_only = true,
           .discovery_irrelevant = true,
           .flag = &P::rdma_extensions},
    KeyDef{.name = "HeaderDigest",
           .kind = KeyKind::kDigestList,
           .flag = &P::header_digest,
           .initiator_always_proposes = true},
    KeyDef{.name = "DataDigest",
           .kind = KeyKind::kDigestList,
           .flag = &P::data_digest,
           .initiator_always_proposes = true},
    KeyDef{.name = "MaxConnections",
           .kind = KeyKind::kNumMin,
           .min = 1,
           .max = 65535,
           .leading_only = true,
           .discovery_irrelevant = true,
           .field = &P::max_connections,
           .initiator_always_proposes = true},
    KeyDef{.name = "InitialR2T",
           .kind = KeyKind::kBoolOr,
           .leading_only = true,
           .discovery_irrelevant = true,
           .flag = &P::initial_r2t,
           .initiator_always_proposes = true},
    KeyDef{.name = "ImmediateData",
           .kind = KeyKind::kBoolAnd,
           .leading_only = true,
           .discovery_irrelevant = true,
           .flag = &P::immediate_data,
           .initiator_always_proposes = true},
    KeyDef{.name = "MaxRecvDataSegmentLength",
           .kind = KeyKind::kDeclNumber,
           .min = 512,
           .max = kMaxDsl,
           .field = &P::initiator_max_recv_dsl,
           .target_field = &P::target_max_recv_dsl},
    KeyDef{.name = "MaxBurstLength",
           .kind = KeyKind::kNumMin,
           .min = 512,
           .max = kMaxDsl,
           .leading_only = true,
           .discovery_irrelevant = true,
           .field = &P::max_burst_length,
           .initiator_always_proposes = true},
    KeyDef{.name = "FirstBurstLength",
           .kind = KeyKind::kNumMin,
           .min = 512,
           .max = kMaxDsl,
           .leading_only = true,
           .discovery_irrelevant = true,
           .field = &P::first_burst_length,
           .initiator_always_proposes = true},
    KeyDef{.name = "DefaultTime2Wait",
           .kind = KeyKind::kNumMax,
           .min = 0,
           .max = 3600,
           .leading_only = true,
           .field = &P::default_time2wait,
           .initiator_always_proposes = true},
    KeyDef{.name = "DefaultTime2Retain",
           .kind = KeyKind::kNumMin,
           .min = 0,
           .max = 3600,
           .leading_only = true,
           .field = &P::default_time2retain,
           .initiator_always_proposes = true},
    KeyDef{.name = "MaxOutstandingR2T",
           .kind = KeyKind::kNumMin,
           .min = 1,
           .max = 65535,
           .leading_only = true,
           .discovery_irrelevant = true,
           .field = &P::max_outstanding_r2t,
           .initiator_always_proposes = true},
    KeyDef{.name = "DataPDUInOrder",
           .kind = KeyKind::kBoolOr,
           .leading_only = true,
           .discovery_irrelevant = true,
           .flag = &P::data_pdu_in_order,
           .initiator_always_proposes = true},
    KeyDef{.name = "DataSequenceInOrder",
           .kind = KeyKind::kBoolOr,
           .leading_only = true,
           .discovery_irrelevant = true,
           .flag = &P::data_sequence_in_order,
           .initiator_always_proposes = true},
    KeyDef{.name = "ErrorRecoveryLevel",
           .kind = KeyKind::kNumMin,
           .min = 0,
           .max = 2,
           .leading_only = true,
           .field = &P::error_recovery_level,
           .initiator_always_proposes = true},
    KeyDef{.name = "TaskReporting",
           .kind = KeyKind::kTaskReporting,
           .leading_only = true,
           .discovery_irrelevant = true},
    KeyDef{.name = "iSCSIProtocolLevel",
           .kind = KeyKind::kNumMin,
           .min = 0,
           .max = 31,
           .leading_only = true,
           .field = &P::iscsi_protocol_level},
    KeyDef{.name = "OFMarker", .kind = KeyKind::kObsoleteMarker},
    KeyDef{.name = "IFMarker", .kind = KeyKind::kObsoleteMarker},
    KeyDef{.name = "OFMarkInt", .kind = KeyKind::kObsoleteMarkInt},
    KeyDef{.name = "IFMarkInt", .kind = KeyKind::kObsoleteMarkInt},
    KeyDef{.name = "TargetRecvDataSegmentLength",
           .kind = KeyKind::kNumMin,
           .min = 512,
           .max = kMaxDsl,
           .iser = true,
           .field = &P::target_recv_dsl,
           .initiator_always_proposes = true},
    KeyDef{.name = "InitiatorRecvDataSegmentLength",
           .kind = KeyKind::kNumMin,
           .min = 512,
           .max = kMaxDsl,
           .iser = true,
           .field = &P::initiator_recv_dsl,
           .initiator_always_proposes = true},
    KeyDef{.name = "MaxOutstandingUnexpectedPDUs",
           .kind = KeyKind::kDeclNumber,
           .min = 2,
           .max = 0xffffffffu,
           .zero_allowed = true,
           .leading_only = true,
           .iser = true,
           .field = &P::max_outstanding_unexpected_pdus,
           .target_field = &P::target_max_outstanding_unexpected_pdus},
    KeyDef{.name = "MaxAHSLength",
           .kind = KeyKind::kDeclNumber,
           .min = 2,
           .max = 0xffffffffu,
           .zero_allowed = true,
           .leading_only = true,
           .iser = true,
           .field = &P::max_ahs_length,
           .target_field = &P::target_max_ahs_length},
    KeyDef{.name = "TaggedBufferForSolicitedDataOnly",
           .kind = KeyKind::kDeclBool,
           .leading_only = true,
           .iser = true,
           .senders = kSentByInitiator,
           .flag = &P::tagged_buffer_for_solicited_data_only},
    KeyDef{.name = "iSERHelloRequired",
           .kind = KeyKind::kDeclBool,
           .leading_only = true,
           .iser = true,
           .senders = kSentByInitiator,
           .flag = &P::iser_hello_required},
};

bool IsSpecialValue(std::string_view v) {
  return v == kNotUnderstood || v == kIrrelevant || v == kReject;
}

bool InRange(const KeyDef& def, uint64_t v) {
  return (v >= def.min && v <= def.max) || (def.zero_allowed && v == 0);
}

absl::StatusOr<uint64_t> ParseInRange(const KeyDef& def, std::string_view value) {
  absl::StatusOr<uint64_t> v = ParseNumber(value);
  if (!v.ok()) return v.status();
  if (!InRange(def, *v)) {
    return absl::OutOfRangeError(
        absl::StrCat(std::string(def.name), "=", std::string(value), " out of range"));
  }
  return *v;
}

std::string DigestOffer(bool crc) { return crc ? "CRC32C,None" : "None"; }

}  // namespace

std::span<const KeyDef> OperationalKeys() { return kKeys; }

const KeyDef* FindOperationalKey(std::string_view name) {
  for (const KeyDef& def : kKeys) {
    if (def.name == name) return &def;
  }
  return nullptr;
}

bool IsSecurityKey(std::string_view name) {
  return name == "AuthMethod" || name == "CHAP_A" || name == "CHAP_I" || name == "CHAP_C" ||
         name == "CHAP_N" || name == "CHAP_R";
}

bool IsIdentityKey(std::string_view name) {
  return name == "InitiatorName" || name == "InitiatorAlias" || name == "TargetName" ||
         name == "TargetAlias" || name == "TargetAddress" || name == "TargetPortalGroupTag" ||
         name == "SessionType";
}

KeyEngine::KeyEngine(Role role, const OperationalParams& offer, bool rdma_capable, bool leading,
                     std::optional<OperationalParams> session_params)
    : role_(role),
      offer_(offer),
      rdma_capable_(rdma_capable),
      leading_(leading),
      session_params_(std::move(session_params)),
      entries_(kKeys.size()) {}

size_t KeyEngine::Index(const KeyDef& def) const {
  return static_cast<size_t>(&def - kKeys.data());
}

bool KeyEngine::rdma_extensions() const {
  if (!leading_) return session_params_.has_value() && session_params_->rdma_extensions;
  const Entry& e = entries_[0];  // RDMAExtensions
  return e.result.has_value() && *e.result == "Yes";
}

bool KeyEngine::BoolResult(std::string_view name, bool default_value) const {
  const KeyDef* def = FindOperationalKey(name);
  const Entry& e = entries_[Index(*def)];
  if (e.result.has_value()) return *e.result == "Yes";
  if (!leading_ && session_params_.has_value()) return session_params_.value().*(def->flag);
  return default_value;
}

bool KeyEngine::Relevant(const KeyDef& def, bool for_proposal) const {
  if (def.leading_only && !leading_) return false;
  if (def.discovery_irrelevant && session_type_ == SessionType::kDiscovery) return false;
  if (def.iser) {
    bool rdma = rdma_extensions();
    if (for_proposal && role_ == Role::kInitiator) {
      rdma = rdma || (rdma_capable_ && !entries_[0].answered);
    }
    if (!rdma) return false;
  }
  if (def.name == "FirstBurstLength" && !for_proposal) {
    // Irrelevant when InitialR2T=Yes and ImmediateData=No (sec 13.14).
    if (BoolResult("InitialR2T", true) && !BoolResult("ImmediateData", true)) return false;
  }
  return true;
}

std::string KeyEngine::OurValue(const KeyDef& def) const {
  switch (def.kind) {
    case KeyKind::kBoolAnd:
    case KeyKind::kBoolOr:
      if (def.name == "RDMAExtensions") return std::string(BoolText(rdma_capable_));
      return std::string(BoolText(offer_.*(def.flag)));
    case KeyKind::kNumMin:
    case KeyKind::kNumMax:
      return absl::StrCat(offer_.*(def.field));
    case KeyKind::kDigestList:
      return DigestOffer(offer_.*(def.flag) && !rdma_extensions());
    case KeyKind::kTaskReporting:
      return "RFC3720";
    case KeyKind::kDeclNumber:
      return absl::StrCat(role_ == Role::kTarget ? offer_.*(def.target_field)
                                                 : offer_.*(def.field));
    case KeyKind::kDeclBool:
      return std::string(BoolText(offer_.*(def.flag)));
    case KeyKind::kObsoleteMarker:
      return "No";
    case KeyKind::kObsoleteMarkInt:
      return std::string(kIrrelevant);
  }
  return "";
}

bool KeyEngine::ShouldPropose(const KeyDef& def) const {
  if (!Relevant(def, true)) return false;
  switch (def.kind) {
    case KeyKind::kDeclNumber:
    case KeyKind::kDeclBool:
    case KeyKind::kObsoleteMarker:
    case KeyKind::kObsoleteMarkInt:
    case KeyKind::kTaskReporting:
      return false;
    default:
      break;
  }
  if (def.name == "RDMAExtensions") {
    return role_ == Role::kInitiator && rdma_capable_ && leading_ &&
           session_type_ == SessionType::kNormal;
  }
  if (role_ == Role::kInitiator && def.initiator_always_proposes) return true;
  // Otherwise only when our value differs from the RFC default.
  KeyEngine defaults(role_, OperationalParams{}, false, leading_, session_params_);
  return OurValue(def) != defaults.OurValue(def);
}

absl::Status KeyEngine::ProcessPeerKeys(const KeyValueList& keys, bool first_in_stage,
                                        KeyValueList* out) {
  // RDMAExtensions first (it changes what the others mean), FirstBurstLength last (its
  // relevance and bound depend on InitialR2T, ImmediateData and MaxBurstLength).
  auto rank = [](std::string_view k) {
    return k == "RDMAExtensions" ? 0 : (k == "FirstBurstLength" ? 2 : 1);
  };
  for (int pass = 0; pass < 3; ++pass) {
    for (const KeyValue& kv : keys) {
      if (rank(kv.key) != pass) continue;
      const KeyDef* def = FindOperationalKey(kv.key);
      if (def == nullptr) continue;
      if (absl::Status s = ProcessOne(*def, kv.value, first_in_stage, out); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status KeyEngine::ProcessOne(const KeyDef& def, std::string_view value, bool first_in_stage,
                                   KeyValueList* out) {
  Entry& e = entries_[Index(def)];
  const uint8_t peer_bit = role_ == Role::kTarget ? kSentByInitiator : kSentByTarget;
  auto reply = [&](std::string_view v) { out->push_back({std::string(def.name), std::string(v)}); };

  if ((def.senders & peer_bit) == 0) {
    reply(kReject);
    return absl::OkStatus();
  }
  if (e.we_proposed) {
    if (e.answered) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(def.name), " negotiated twice"));
    }
    return TakeAnswer(def, value, &e);
  }
  if (IsSpecialValue(value)) return absl::OkStatus();  // not a valid proposal; ignore

  if (def.kind == KeyKind::kDeclNumber || def.kind == KeyKind::kDeclBool) {
    bool valid =
        def.kind == KeyKind::kDeclNumber ? ParseInRange(def, value).ok() : ParseBool(value).ok();
    if (!valid) {
      reply(kReject);
      return absl::OkStatus();
    }
    if (Relevant(def, false)) e.peer_value = std::string(value);
    return absl::OkStatus();
  }

  if (e.peer_proposed) {
    // A repeated proposal (some initiators repeat every key in each Login PDU): the
    // same value gets the same answer; a changed value is a protocol error.
    if (value != e.peer_value) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(def.name), " negotiated twice"));
    }
    reply(e.result.has_value() ? *e.result : Answer(def, value, &e));
    return absl::OkStatus();
  }

  if (def.kind == KeyKind::kObsoleteMarker) {
    e.peer_proposed = true;
    e.peer_value = std::string(value);
    reply(ParseBool(value).ok() ? "No" : kReject);
    return absl::OkStatus();
  }
  if (def.kind == KeyKind::kObsoleteMarkInt) {
    e.peer_proposed = true;
    e.peer_value = std::string(value);
    reply(kIrrelevant);
    return absl::OkStatus();
  }
  if (def.name == "RDMAExtensions" && leading_ && session_type_ == SessionType::kNormal &&
      !first_in_stage) {
    // RFC 7145 sec 6.3: only in the first operational-stage Login PDU.
    e.peer_proposed = true;
    e.peer_value = std::string(value);
    reply(kReject);
    return absl::OkStatus();
  }
  if (!Relevant(def, false)) {
    e.peer_proposed = true;
    e.peer_value = std::string(value);
    reply(kIrrelevant);
    return absl::OkStatus();
  }
  reply(Answer(def, value, &e));
  return absl::OkStatus();
}

std::string KeyEngine::Answer(const KeyDef& def, std::string_view value, Entry* e) {
  e->peer_proposed = true;
  e->peer_value = std::string(value);
  std::string ours = OurValue(def);
  switch (def.kind) {
    case KeyKind::kBoolAnd:
    case KeyKind::kBoolOr: {
      absl::StatusOr<bool> v = ParseBool(value);
      if (!v.ok()) return std::string(kReject);
      bool mine = ours == "Yes";
      bool r = def.kind == KeyKind::kBoolAnd ? (*v && mine) : (*v || mine);
      e->result = std::string(BoolText(r));
      return *e->result;
    }
    case KeyKind::kNumMin:
    case KeyKind::kNumMax: {
      absl::StatusOr<uint64_t> v = ParseInRange(def, value);
      if (!v.ok()) return std::string(kReject);
      uint64_t mine = offer_.*(def.field);
      uint64_t r = def.kind == KeyKind::kNumMin ? std::min(*v, mine) : std::max(*v, mine);
      if (def.name == "FirstBurstLength") {
        // FirstBurstLength must not exceed MaxBurstLength (sec 13.14).
        const Entry& mbl = entries_[Index(*FindOperationalKey("MaxBurstLength"))];
        uint64_t max_burst = mbl.result.has_value() ? ParseNumber(*mbl.result).value_or(r)
                                                    : OperationalParams{}.max_burst_length;
        r = std::min(r, max_burst);
      }
      e->result = absl::StrCat(r);
      return *e->result;
    }
    case KeyKind::kDigestList:
    case KeyKind::kTaskReporting: {
      absl::StatusOr<std::vector<std::string_view>> items = ParseList(value);
      if (!items.ok()) return std::string(kReject);
      absl::StatusOr<std::vector<std::string_view>> allowed = ParseList(ours);
      // A side configured for digests uses CRC32C whenever the proposer offers it (the
      // "allowed to use" policy of sec 6.2.1); otherwise the proposer's order decides.
      if (def.kind == KeyKind::kDigestList && allowed->front() == "CRC32C" &&
          std::find(items->begin(), items->end(), "CRC32C") != items->end()) {
        e->result = "CRC32C";
        return *e->result;
      }
      for (std::string_view item : *items) {
        if (std::find(allowed->begin(), allowed->end(), item) != allowed->end()) {
          e->result = std::string(item);
          return *e->result;
        }
      }
      return std::string(kReject);
    }
    default:
      return std::string(kReject);
  }
}

absl::Status KeyEngine::TakeAnswer(const KeyDef& def, std::string_view value, Entry* e) {
  e->answered = true;
  if (IsSpecialValue(value)) return absl::OkStatus();  // the default stays
  std::string ours = OurValue(def);
  auto bad = [&]() {
    return absl::InvalidArgumentError(absl::StrCat("unacceptable answer ", std::string(def.name),
                                                   "=", std::string(value), " to ", ours));
  };
  switch (def.kind) {
    case KeyKind::kBoolAnd:
    case KeyKind::kBoolOr: {
      absl::StatusOr<bool> v = ParseBool(value);
      if (!v.ok()) return bad();
      bool mine = ours == "Yes";
      if (def.kind == KeyKind::kBoolAnd && !mine && *v) return bad();
      if (def.kind == KeyKind::kBoolOr && mine && !*v) return bad();
      e->result = std::string(BoolText(*v));
      return absl::OkStatus();
    }
    case KeyKind::kNumMin:
    case KeyKind::kNumMax: {
      absl::StatusOr<uint64_t> v = ParseInRange(def, value);
      if (!v.ok()) return bad();
      uint64_t mine = offer_.*(def.field);
      if (def.kind == KeyKind::kNumMin ? *v > mine : *v < mine) return bad();
      e->result = absl::StrCat(*v);
      return absl::OkStatus();
    }
    case KeyKind::kDigestList:
    case KeyKind::kTaskReporting: {
      absl::StatusOr<std::vector<std::string_view>> allowed = ParseList(ours);
      if (std::find(allowed->begin(), allowed->end(), value) == allowed->end()) return bad();
      e->result = std::string(value);
      return absl::OkStatus();
    }
    default:
      return bad();
  }
}

bool KeyEngine::HasOwnKeysToSend(bool propose) const {
  KeyEngine copy = *this;
  KeyValueList out;
  copy.AppendOwnKeys(propose, &out);
  return !out.empty();
}

void KeyEngine::AppendOwnKeys(bool propose, KeyValueList* out) {
  const uint8_t our_bit = role_ == Role::kTarget ? kSentByTarget : kSentByInitiator;
  for (const KeyDef& def : kKeys) {
    Entry& e = entries_[Index(def)];
    if ((def.senders & our_bit) == 0) continue;
    // A key may appear once per PDU; if we already answer it here, ours waits a PDU.
    if (FindKey(*out, def.name) != nullptr) continue;
    if (def.kind == KeyKind::kDeclNumber || def.kind == KeyKind::kDeclBool) {
      if (e.we_declared || !Relevant(def, true)) continue;
      // With iSER, MaxRecvDataSegmentLength is replaced (RFC 7145 sec 6.1); the
      // initiator still declares it in case the target refuses RDMAExtensions.
      if (def.name == "MaxRecvDataSegmentLength" && role_ == Role::kTarget && rdma_extensions()) {
        continue;
      }
      e.we_declared = true;
      out->push_back({std::string(def.name), OurValue(def)});
      continue;
    }
    if (!propose || e.we_proposed || e.peer_proposed || !ShouldPropose(def)) continue;
    e.we_proposed = true;
    out->push_back({std::string(def.name), OurValue(def)});
  }
}

bool KeyEngine::HasNonDefaultOwnKeys() const {
  KeyEngine copy = *this;
  KeyValueList out;
  copy.AppendOwnKeys(true, &out);
  KeyEngine defaults(role_, OperationalParams{}, false, leading_, session_params_);
  for (const KeyValue& kv : out) {
    const KeyDef* def = FindOperationalKey(kv.key);
    bool declaration = def->kind == KeyKind::kDeclNumber || def->kind == KeyKind::kDeclBool;
    if (!declaration || kv.value != defaults.OurValue(*def)) return true;
  }
  return false;
}

bool KeyEngine::AwaitingAnswers() const {
  for (const Entry& e : entries_) {
    if (e.we_proposed && !e.answered) return true;
  }
  return false;
}

OperationalParams KeyEngine::Finalize() const {
  OperationalParams p;
  if (!leading_ && session_params_.has_value()) {
    p = *session_params_;
    OperationalParams d;
    p.header_digest = d.header_digest;
    p.data_digest = d.data_digest;
    p.initiator_max_recv_dsl = d.initiator_max_recv_dsl;
    p.target_max_recv_dsl = d.target_max_recv_dsl;
    p.initiator_recv_dsl = d.initiator_recv_dsl;
    p.target_recv_dsl = d.target_recv_dsl;
  }
  for (const KeyDef& def : kKeys) {
    const Entry& e = entries_[Index(def)];
    switch (def.kind) {
      case KeyKind::kBoolAnd:
      case KeyKind::kBoolOr:
        if (e.result.has_value()) p.*(def.flag) = *e.result == "Yes";
        break;
      case KeyKind::kNumMin:
      case KeyKind::kNumMax:
        if (e.result.has_value()) {
          p.*(def.field) = static_cast<uint32_t>(ParseNumber(*e.result).value_or(0));
        }
        break;
      case KeyKind::kDigestList:
        if (e.result.has_value()) p.*(def.flag) = *e.result == "CRC32C";
        break;
      case KeyKind::kDeclNumber: {
        uint32_t OperationalParams::*mine = role_ == Role::kTarget ? def.target_field : def.field;
        uint32_t OperationalParams::*theirs = role_ == Role::kTarget ? def.field : def.target_field;
        if (e.we_declared) p.*mine = offer_.*mine;
        if (!e.peer_value.empty()) {
          p.*theirs = static_cast<uint32_t>(ParseNumber(e.peer_value).value_or(0));
        }
        break;
      }
      case KeyKind::kDeclBool:
        if (role_ == Role::kInitiator && e.we_declared) p.*(def.flag) = offer_.*(def.flag);
        if (role_ == Role::kTarget && !e.peer_value.empty()) {
          p.*(def.flag) = e.peer_value == "Yes";
        }
        break;
      default:
        break;
    }
  }
  p.rdma_extensions = rdma_extensions();
  if (p.rdma_extensions) {
    p.header_digest = false;
    p.data_digest = false;
  } else if (leading_) {
    OperationalParams d;
    p.tagged_buffer_for_solicited_data_only = d.tagged_buffer_for_solicited_data_only;
    p.iser_hello_required = d.iser_hello_required;
  }
  p.first_burst_length = std::min(p.first_burst_length, p.max_burst_length);
  return p;
}

}  // namespace iser::login
