// Initiator side of login (RFC 7143 sec 6, 11.12-11.13, 12.1.3): the mirror image of
// TargetNegotiator, over the same key table. Pure logic: the caller sends each request
// as Login Request PDU(s) and feeds each reassembled Login Response back.
#ifndef ISER_LOGIN_INITIATOR_NEGOTIATOR_H_
#define ISER_LOGIN_INITIATOR_NEGOTIATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "iser/login/negotiation.h"

namespace iser::login {

struct InitiatorLoginConfig {
  std::string initiator_name;
  std::string initiator_alias;  // optional
  std::string target_name;      // required for normal sessions
  SessionType session_type = SessionType::kNormal;
  // What we propose (negotiated keys) and declare (initiator_max_recv_dsl and the iSER
  // declarations). header_digest / data_digest true offer "CRC32C,None".
  OperationalParams offer;
  bool rdma = false;  // propose RDMAExtensions=Yes (iSER)
  bool leading = true;
  std::optional<OperationalParams> session_params;  // for non-leading connections
  // Empty user: no authentication (the login starts in the operational stage).
  ChapCredentials chap;
  // Set: the target must authenticate itself (mutual CHAP) with this user and secret.
  ChapCredentials mutual_chap;
  // CHAP_A values we offer, in order of preference.
  std::vector<int> chap_algorithms = {7, 6, 5};
  std::function<void(uint8_t* out, size_t len)> random_bytes;  // empty: RAND_bytes
  int max_exchanges = 32;  // give up on a target that never finishes
};

// One Login Request to send (the caller adds ISID, TSIH, CID, ITT, CmdSN, ...).
struct InitiatorRequest {
  uint8_t csg = 0;
  uint8_t nsg = 0;
  bool transit = false;
  std::string text;
};

class InitiatorNegotiator {
 public:
  explicit InitiatorNegotiator(InitiatorLoginConfig config);
  ~InitiatorNegotiator();

  // The first Login Request.
  InitiatorRequest Start();

  // Handles a Login Response. Returns the next request, or nullopt once the target has
  // moved the connection into full feature phase. Errors end the login:
  // kUnauthenticated (0201 or a bad mutual CHAP answer), kPermissionDenied (0202),
  // kNotFound (0203), kUnavailable (redirect: see redirect_address(), or 03xx),
  // kInvalidArgument / kFailedPrecondition for other rejections and protocol errors.
  absl::StatusOr<std::optional<InitiatorRequest>> OnResponse(const LoginResponse& response);

  bool full_feature() const;
  const OperationalParams& params() const;
  uint16_t target_portal_group_tag() const;
  const std::string& target_alias() const;
  const std::string& redirect_address() const;  // TargetAddress of a redirect response

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace iser::login

#endif  // ISER_LOGIN_INITIATOR_NEGOTIATOR_H_
