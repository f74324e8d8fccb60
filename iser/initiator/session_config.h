// What an initiator session is configured with, and the state that describes it well
// enough to be handed to another process (ISID, target, portal, negotiated values).
#ifndef ISER_INITIATOR_SESSION_CONFIG_H_
#define ISER_INITIATOR_SESSION_CONFIG_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "iser/initiator/initiator_transport.h"
#include "iser/login/negotiation.h"

namespace iser::initiator {

struct SessionConfig {
  std::string portal;  // "127.0.0.1:3260"
  std::string initiator_name = "iqn.2026-11.org.iser-csi:initiator";
  std::string target_name;  // empty for discovery sessions
  login::SessionType session_type = login::SessionType::kNormal;
  login::ChapCredentials chap;         // empty user: no authentication
  login::ChapCredentials mutual_chap;  // set: the target must authenticate itself too
  bool header_digest = false;
  bool data_digest = false;
  // 0: a random ISID of the "random" qualifier type (RFC 7143 sec 11.12.5).
  uint64_t isid = 0;
  // What we offer; the target may lower each (the keys' range ends at 2^24 - 1).
  uint32_t max_recv_data_segment_length = 256 << 10;
  uint32_t max_burst_length = (16 << 20) - 512;
  uint32_t first_burst_length = 256 << 10;
  uint32_t max_outstanding_r2t = 16;
  // What we propose for write data: ImmediateData=Yes and InitialR2T=No let a write
  // carry its first burst with the command (the target may still refuse either).
  bool immediate_data = true;
  bool initial_r2t = false;
  // Commands in flight at the target at once (the CmdSN window may allow fewer; the
  // rest wait locally).
  uint32_t queue_depth = 128;
  // Connections per session (MC/S, RFC 7143 sec 4.2): we offer MaxConnections=this and
  // open as many as the target allows (commands go out round robin).
  uint32_t connections = 1;

  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration login_timeout = absl::Seconds(15);
  // Keep-alive: a NOP-Out ping when nothing arrived for nop_interval; no answer within
  // nop_timeout drops the connection (and starts recovery). Zero interval: off.
  absl::Duration nop_interval = absl::Seconds(5);
  absl::Duration nop_timeout = absl::Seconds(10);
  // A command not answered within this time is aborted (ABORT TASK) and failed.
  absl::Duration command_timeout = absl::Seconds(60);
  // Recovery: reconnect with exponential backoff; commands still outstanding when this
  // passes are failed with an I/O error (open-iscsi's replacement_timeout).
  absl::Duration replacement_timeout = absl::Seconds(120);
  absl::Duration reconnect_backoff_initial = absl::Milliseconds(100);
  absl::Duration reconnect_backoff_max = absl::Seconds(5);

  TransportFactory transport_factory;  // required
  // Called on the session's loop each time the session enters full feature phase: the
  // first login and every reinstatement. With transport "auto" a reinstatement may land
  // on another transport than the first login; whoever reports the transport (the
  // attachment record) follows it here.
  std::function<void(InitiatorTransportKind)> on_logged_in;
};

// A session's durable description: enough for a new process to reinstate it (same
// ISID, TSIH 0) and know what was negotiated. Text form: one "key=value" per line.
struct SessionState {
  std::string portal;
  std::string initiator_name;
  std::string target_name;
  uint64_t isid = 0;
  uint16_t tsih = 0;
  uint32_t cmd_sn = 0;
  uint32_t exp_stat_sn = 0;
  login::OperationalParams params;

  std::string Serialize() const;
  static absl::StatusOr<SessionState> Parse(const std::string& text);

  // The config a new process uses to take the session over: same portal, names and
  // ISID (so logging in reinstates it), the digests and limits that were negotiated.
  // Credentials and the transport factory are not part of the state: add them.
  SessionConfig ToConfig() const;
};

}  // namespace iser::initiator

#endif  // ISER_INITIATOR_SESSION_CONFIG_H_
