// Login and text negotiation (RFC 7143 sec 6 and 13; iSER keys RFC 7145 sec 6).
//
// The connection code owns the PDUs (ISID, TSIH, CID, ITT, StatSN, C-bit reassembly);
// this layer sees only the stage fields and the reassembled key=value text, and decides
// what to answer. Pure logic: no I/O, no clocks, deterministic given its inputs (CHAP
// challenges come from an injectable random source).
#ifndef ISER_LOGIN_NEGOTIATION_H_
#define ISER_LOGIN_NEGOTIATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace iser::login {

enum class SessionType { kNormal, kDiscovery };

// Login stages (CSG/NSG field values).
inline constexpr uint8_t kSecurityNegotiation = 0;
inline constexpr uint8_t kOperationalNegotiation = 1;
inline constexpr uint8_t kFullFeaturePhase = 3;

// Negotiated operational values; defaults are the RFC 7143 sec 13 defaults.
struct OperationalParams {
  bool header_digest = false;  // CRC32C
  bool data_digest = false;
  uint32_t max_connections = 1;
  bool initial_r2t = true;
  bool immediate_data = true;
  uint32_t max_burst_length = 262144;
  uint32_t first_burst_length = 65536;
  uint32_t default_time2wait = 2;
  uint32_t default_time2retain = 20;
  uint32_t max_outstanding_r2t = 1;
  bool data_pdu_in_order = true;
  bool data_sequence_in_order = true;
  uint32_t error_recovery_level = 0;
  // Declarative, per direction: the largest data segment each side accepts.
  uint32_t initiator_max_recv_dsl = 8192;  // the target must not send more per PDU
  uint32_t target_max_recv_dsl = 8192;     // the initiator must not send more per PDU
  // iSER (RFC 7145). With rdma_extensions the two *_recv_dsl below replace the
  // MaxRecvDataSegmentLength values for control PDUs and digests are forced off.
  bool rdma_extensions = false;
  uint32_t initiator_recv_dsl = 8192;
  uint32_t target_recv_dsl = 8192;
  uint32_t max_outstanding_unexpected_pdus = 0;
  uint32_t max_ahs_length = 256;
  bool tagged_buffer_for_solicited_data_only = false;
  bool iser_hello_required = false;
  // Declarations made by the target (the fields above hold the initiator's).
  uint32_t target_max_outstanding_unexpected_pdus = 0;
  uint32_t target_max_ahs_length = 256;
  // iSCSIProtocolLevel (RFC 7144 sec 2.1): 0 = unspecified, 1 = RFC 7143.
  uint32_t iscsi_protocol_level = 0;
};

// CHAP credentials. An empty user means "not configured".
struct ChapCredentials {
  std::string user;
  std::string secret;
};

// What the target knows about one of its target nodes, looked up by TargetName.
struct TargetNodeInfo {
  std::string name;
  std::string alias;
  ChapCredentials chap;         // initiator must authenticate with these if set
  ChapCredentials mutual_chap;  // target answers the initiator's challenge with these
  std::vector<std::string> allowed_initiators;  // empty: any initiator may log in
};

struct TargetLoginConfig {
  // Values the target proposes / its limits (e.g. the largest MaxBurstLength it takes).
  OperationalParams offer;
  uint16_t target_portal_group_tag = 1;
  bool rdma_capable = false;  // this connection can run iSER (answer RDMAExtensions=Yes)
  // Returns nullopt for an unknown target name.
  std::function<std::optional<TargetNodeInfo>(std::string_view target_name)> lookup_target;
  // Fills `out` with random bytes (CHAP challenges and identifiers). Empty: OpenSSL
  // RAND_bytes.
  std::function<void(uint8_t* out, size_t len)> random_bytes;
  // CHAP for discovery sessions (no TargetNodeInfo applies to them).
  ChapCredentials discovery_chap;
  ChapCredentials discovery_mutual_chap;
  // CHAP_A values the target accepts (IANA PPP authentication algorithms: 5 MD5,
  // 6 SHA-1, 7 SHA-256, 8 SHA3-256). The initiator's order decides among them.
  std::vector<int> chap_algorithms = {5, 6, 7, 8};
};

// One reassembled Login Request as the negotiator needs it.
struct LoginRequest {
  uint8_t csg = 0;
  uint8_t nsg = 0;
  bool transit = false;
  std::string_view text;  // all key=value\0 pairs of the request (C-bit reassembled)
};

struct LoginResponse {
  uint8_t csg = 0;
  uint8_t nsg = 0;
  bool transit = false;
  uint8_t status_class = 0;  // 0 success, 1 redirect, 2 initiator error, 3 target error
  uint8_t status_detail = 0;
  std::string text;  // key=value\0 pairs to send (the caller splits with C bit)
  // True when this response moves the connection into full feature phase.
  bool full_feature = false;
  // True when the login failed: send this response, then close the connection.
  bool failed() const { return status_class != 0; }
};

// Target side of one connection's login.
class TargetNegotiator {
 public:
  // `leading`: TSIH was 0 in the first request (a new session). Non-leading connections
  // inherit `session_params` (leading-only keys are Irrelevant/rejected for them).
  TargetNegotiator(TargetLoginConfig config, bool leading,
                   std::optional<OperationalParams> session_params = std::nullopt);
  ~TargetNegotiator();

  LoginResponse Step(const LoginRequest& request);

  // Valid once Step() returned full_feature (some are known earlier).
  const OperationalParams& params() const;
  SessionType session_type() const;
  const std::string& initiator_name() const;
  const std::string& initiator_alias() const;
  const std::string& target_name() const;  // empty for discovery sessions

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Text request/response in full feature phase on the target (RFC 7143 sec 11.10, 11.11).
// Handles SendTargets=All|<name>|"" for discovery and normal sessions, and answers any
// other key with NotUnderstood (or Irrelevant / Reject as sec 6 says).
struct PortalInfo {
  std::string address;  // "127.0.0.1:3260" or "[::1]:3260"
  uint16_t target_portal_group_tag = 1;
};
std::string TargetTextResponse(std::string_view request_text, SessionType session_type,
                               std::string_view session_target_name,
                               const std::vector<TargetNodeInfo>& targets,
                               const std::vector<PortalInfo>& portals,
                               std::string_view initiator_name);
// As above, but a malformed request text (which TargetTextResponse answers with an empty
// text) is reported, so the caller can send a Reject PDU instead (sec 11.17.1).
absl::StatusOr<std::string> TargetTextResponseOrError(std::string_view request_text,
                                                      SessionType session_type,
                                                      std::string_view session_target_name,
                                                      const std::vector<TargetNodeInfo>& targets,
                                                      const std::vector<PortalInfo>& portals,
                                                      std::string_view initiator_name);

}  // namespace iser::login

#endif  // ISER_LOGIN_NEGOTIATION_H_
