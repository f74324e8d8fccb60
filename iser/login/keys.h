// The operational text keys of RFC 7143 sec 13 (plus RFC 7144 iSCSIProtocolLevel and
// the iSER keys of RFC 7145 sec 6) as one table, and the negotiation engine that both
// the target and the initiator run over it.
//
// Security keys (AuthMethod, CHAP_*) and the identity keys (InitiatorName, TargetName,
// SessionType, aliases, TargetPortalGroupTag, TargetAddress) are not in this table: the
// negotiators handle them directly.
#ifndef ISER_LOGIN_KEYS_H_
#define ISER_LOGIN_KEYS_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"

namespace iser::login {

enum class Role { kInitiator, kTarget };

enum class KeyKind {
  kBoolAnd,          // result = AND of both values
  kBoolOr,           // result = OR
  kNumMin,           // result = minimum
  kNumMax,           // result = maximum
  kDigestList,       // list of None / CRC32C: first of the proposer's list we accept
  kTaskReporting,    // list of RFC3720 / ResponseFence / FastAbort (we do RFC3720)
  kDeclNumber,       // declarative number, one value per direction
  kDeclBool,         // declarative boolean (sender: initiator)
  kObsoleteMarker,   // OFMarker / IFMarker: answered "No" (RFC 7143 sec 13.26)
  kObsoleteMarkInt,  // OFMarkInt / IFMarkInt: answered "Irrelevant"
};

inline constexpr uint8_t kSentByInitiator = 1;
inline constexpr uint8_t kSentByTarget = 2;

struct KeyDef {
  std::string_view name;
  KeyKind kind;
  uint64_t min = 0;  // numeric range, inclusive
  uint64_t max = 0;
  bool zero_allowed = false;  // 0 is valid besides [min, max] (iSER "0 = no limit")
  bool leading_only = false;  // "LO": session-wide, leading connection only
  bool discovery_irrelevant = false;
  bool iser = false;  // irrelevant unless RDMAExtensions=Yes
  uint8_t senders = kSentByInitiator | kSentByTarget;
  // Numeric / boolean field of OperationalParams the result lands in. Declarative keys
  // use `field`/`flag` for the initiator's declaration and `target_field` for the target's.
  uint32_t OperationalParams::*field = nullptr;
  bool OperationalParams::*flag = nullptr;
  uint32_t OperationalParams::*target_field = nullptr;
  // The initiator proposes this key even when its value is the default.
  bool initiator_always_proposes = false;
};

// Every operational key, in the order an initiator sends them.
std::span<const KeyDef> OperationalKeys();
// nullptr if `name` is not an operational key of the table.
const KeyDef* FindOperationalKey(std::string_view name);
// True for keys handled outside the table (security + identity keys, SendTargets).
bool IsSecurityKey(std::string_view name);
bool IsIdentityKey(std::string_view name);

// Runs the operational negotiation of one connection for one side.
class KeyEngine {
 public:
  // `offer`: our values (limits / proposals / declarations). `rdma_capable`: we would
  // answer RDMAExtensions=Yes. Non-leading connections take LO keys from session_params.
  KeyEngine(Role role, const OperationalParams& offer, bool rdma_capable, bool leading,
            std::optional<OperationalParams> session_params);

  void set_session_type(SessionType type) { session_type_ = type; }

  // Handles the peer's operational keys of one PDU: answers its proposals, records its
  // declarations and its answers to our proposals. Appends our answers to `out`.
  // `first_in_stage`: this is the first PDU of the operational stage (RDMAExtensions
  // is only valid there). Errors are protocol errors that end the login.
  absl::Status ProcessPeerKeys(const KeyValueList& keys, bool first_in_stage, KeyValueList* out);

  // Appends our declarations not yet sent, and, if `propose`, our proposals for keys
  // neither side has raised yet (the initiator proposes every relevant key; the target
  // only those whose value differs from the RFC default).
  void AppendOwnKeys(bool propose, KeyValueList* out);

  // True if AppendOwnKeys(propose, ...) would emit anything (with propose=false: a
  // declaration is still unsent).
  bool HasOwnKeysToSend(bool propose) const;
  // True if we have something the peer must hear before full feature phase: a proposal,
  // or a declaration whose value differs from the RFC default.
  bool HasNonDefaultOwnKeys() const;
  // True while a proposal of ours has not been answered.
  bool AwaitingAnswers() const;
  bool rdma_extensions() const;

  // The negotiated values (RFC defaults where nothing was negotiated).
  OperationalParams Finalize() const;

 private:
  struct Entry {
    bool we_proposed = false;    // we sent a proposal and wait for / got an answer
    bool answered = false;       // a proposal of ours was answered
    bool peer_proposed = false;  // the peer proposed and we answered
    bool we_declared = false;
    std::string peer_value;             // the value the peer sent (proposal or declaration)
    std::optional<std::string> result;  // negotiated value ("Yes", "8192", "CRC32C")
  };

  size_t Index(const KeyDef& def) const;
  bool Relevant(const KeyDef& def, bool for_proposal) const;
  std::string OurValue(const KeyDef& def) const;
  bool ShouldPropose(const KeyDef& def) const;
  bool BoolResult(std::string_view name, bool default_value) const;
  // Answers a proposal; returns the value to send.
  std::string Answer(const KeyDef& def, std::string_view value, Entry* e);
  absl::Status TakeAnswer(const KeyDef& def, std::string_view value, Entry* e);
  absl::Status ProcessOne(const KeyDef& def, std::string_view value, bool first_in_stage,
                          KeyValueList* out);

  Role role_;
  OperationalParams offer_;
  bool rdma_capable_;
  bool leading_;
  std::optional<OperationalParams> session_params_;
  SessionType session_type_ = SessionType::kNormal;
  std::vector<Entry> entries_;
};

}  // namespace iser::login

#endif  // ISER_LOGIN_KEYS_H_
