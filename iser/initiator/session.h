// One iSCSI initiator session (RFC 7143), transport-independent, with one or more
// connections (MC/S: SessionConfig::connections, as many as the target's MaxConnections
// allows).
//
// The session logs in (normal or discovery, CHAP and mutual CHAP through
// login::InitiatorNegotiator), runs the full feature phase (ITTs, CmdSN window with a
// local queue beyond MaxCmdSN, immediate + unsolicited data, R2T, Data-In with status,
// NOP keep-alive, Async messages, task management, logout) and recovers from a lost
// connection: it reconnects with exponential backoff, reinstates the session (same
// ISID, TSIH 0) and reissues every command that had not completed; commands still
// outstanding after the replacement timeout fail with an I/O error (kUnavailable).
// Each command completes exactly once.
//
// Multiple connections: the leading connection logs in and carries every control PDU
// (NOP-Out, TMF, Text, Logout); the others log in with the session's TSIH and a CID of
// their own and carry SCSI commands, issued round robin. A command keeps allegiance to
// the connection it went out on (its R2Ts, Data-Out, Data-In and response stay there)
// and each connection has its own StatSN stream. At ErrorRecoveryLevel 0 a lost
// connection means the session is recovered as a whole (RFC 7143 sec 7.1.4.1): every
// connection is closed, the session reinstated and the extra connections added again.
//
// A Session belongs to one EventLoop: every method is called, and every callback runs,
// on that loop's thread.
#ifndef ISER_INITIATOR_SESSION_H_
#define ISER_INITIATOR_SESSION_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/initiator_transport.h"
#include "iser/initiator/session_config.h"
#include "iser/login/initiator_negotiator.h"
#include "iser/pdu/bhs.h"

namespace iser::initiator {

struct ScsiCommand {
  uint64_t lun = 0;
  std::array<uint8_t, 16> cdb{};
  std::span<uint8_t> read;                        // non-empty: a read of read.size() bytes
  std::span<const uint8_t> write;                 // non-empty: a write of write.size() bytes
  absl::Duration timeout = absl::ZeroDuration();  // zero: SessionConfig::command_timeout
};

// The outcome of a command the target answered. Transport-level failures (replacement
// timeout, command timeout, logout) are the error of the StatusOr instead.
struct ScsiResult {
  uint8_t status = 0;  // SAM status: 0 GOOD, 2 CHECK CONDITION, 8 BUSY, ...
  std::vector<uint8_t> sense;
  uint32_t residual = 0;
  bool underflow = false;
  bool overflow = false;
};
using ScsiCallback = absl::AnyInvocable<void(absl::StatusOr<ScsiResult>)>;
using StatusCallback = absl::AnyInvocable<void(absl::Status)>;

struct DiscoveredTarget {
  std::string name;
  std::vector<std::string> addresses;  // TargetAddress values ("host:port,tpgt")
};

class Session final {
 public:
  Session(EventLoop* loop, SessionConfig config);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connects and logs in. `done` gets the login outcome: kUnavailable (unreachable
  // portal), kUnauthenticated (CHAP), kNotFound (no such target), kPermissionDenied,
  // kDeadlineExceeded, ... A session that logged in once recovers by itself afterwards.
  void Login(StatusCallback done);

  // Queues a SCSI command (any state: it waits for the window or for recovery).
  void Submit(ScsiCommand command, ScsiCallback done);

  // Task management (RFC 7143 sec 11.5): e.g. kLogicalUnitReset with ref_itt ignored.
  // Commands a completed LUN-wide function (LUN reset, abort/clear task set) ended at the
  // target are reissued, not failed.
  void TaskManagement(pdu::TmfFunction function, uint64_t lun, uint32_t ref_itt,
                      absl::AnyInvocable<void(absl::StatusOr<pdu::TmfResponse>)> done);

  // SendTargets=All over this session (discovery or normal).
  void SendTargets(absl::AnyInvocable<void(absl::StatusOr<std::vector<DiscoveredTarget>>)> done);

  // Logs the session out and closes it; queued and outstanding commands fail (kAborted).
  void Logout(StatusCallback done);

  // Sense data of SCSI Async events (e.g. CAPACITY DATA HAS CHANGED) for `lun`.
  using AsyncSenseListener = std::function<void(std::span<const uint8_t> sense)>;
  void SetAsyncSenseListener(uint64_t lun, AsyncSenseListener listener);
  void RemoveAsyncSenseListener(uint64_t lun);

  bool logged_in() const { return phase_ == Phase::kFullFeature; }
  SessionState state() const;
  const login::OperationalParams& params() const { return params_; }
  EventLoop* loop() const { return loop_; }
  uint64_t reconnects() const { return reconnects_; }
  // The transport of the current connection ("iser", "tcp"), or the last one while
  // recovering; empty before the first connection.
  std::optional<InitiatorTransportKind> transport_kind() const { return transport_kind_; }
  std::string transport_name() const {
    return transport_kind_ ? TransportKindName(*transport_kind_) : "";
  }
  size_t outstanding() const { return tasks_.size(); }
  // Connections in full feature phase (0 while recovering).
  size_t connection_count() const;
  // SCSI commands issued on each connection in full feature phase, by CID order.
  std::vector<uint64_t> commands_per_connection() const;
  // Drops connection `index` (0: the leading one) as if the network failed (tests;
  // recovery follows).
  void DropConnection(size_t index = 0);

 private:
  enum class Phase { kIdle, kConnecting, kLogin, kFullFeature, kRecovering, kLoggingOut, kClosed };

  // One iSCSI connection: its transport, its StatSN stream, its login and keep-alive.
  // The transport reports to it; it forwards to the session with itself as the source.
  struct Connection final : InitiatorTransportEvents {
    Session* session = nullptr;
    uint16_t cid = 0;
    bool leading = true;
    std::unique_ptr<InitiatorTransport> transport;
    bool ready = false;  // in full feature phase
    uint32_t exp_stat_sn = 0;
    uint64_t commands = 0;  // SCSI commands issued here
    // Login.
    std::unique_ptr<login::InitiatorNegotiator> negotiator;
    login::InitiatorRequest last_login_request;
    std::string login_text;  // C-bit reassembly of the current Login Response
    uint32_t login_itt = 0;
    EventLoop::TimerId login_timer = 0;
    // Keep-alive.
    uint64_t rx_pdus = 0;
    uint64_t rx_pdus_at_tick = 0;
    EventLoop::TimerId ping_timer = 0;

    void OnPduReceived(pdu::ReceivedPdu pdu) override;
    std::span<uint8_t> PlaceData(const pdu::Bhs& bhs) override;
    void OnTransportClosed(const absl::Status& why) override;
  };

  struct Task {
    uint32_t itt = 0;
    uint64_t order = 0;  // submission order: reissue keeps it
    ScsiCommand command;
    ScsiCallback done;
    TaskIo io;
    Connection* connection = nullptr;  // allegiance while issued
    bool issued = false;
    uint32_t cmd_sn = 0;
    // When the command times out (ABORT TASK); InfiniteFuture while not issued.
    absl::Time deadline = absl::InfiniteFuture();
    bool aborting = false;
  };
  // A control request (TMF, Text, Logout, NOP ping) waiting for its response.
  using ControlHandler = absl::AnyInvocable<void(absl::StatusOr<pdu::ReceivedPdu>)>;

  // Connection and login (session.cc).
  void Connect();
  void OnConnected(absl::StatusOr<std::unique_ptr<InitiatorTransport>> transport);
  void StartLogin(Connection& c);
  void SendLoginRequest(Connection& c, const login::InitiatorRequest& request);
  void HandleLoginResponse(Connection& c, pdu::ReceivedPdu pdu);
  void LoginFailed(const absl::Status& why);
  void EnterFullFeature(const pdu::Bhs& final_response);
  void CloseTransport(const absl::Status& why);  // every connection
  void OnConnectionClosed(Connection& c, const absl::Status& why);
  // Extra connections (session_connections.cc).
  void AddConnections();
  void OnExtraConnected(uint16_t cid,
                        absl::StatusOr<std::unique_ptr<InitiatorTransport>> transport);
  void ExtraLoginDone(Connection& c, const pdu::Bhs& final_response);
  void ExtraLoginFailed(Connection& c, const absl::Status& why);
  void MaybeFinishLogin();
  Connection* leading() const;
  Connection* PickConnection();
  void CloseConnection(Connection& c, const absl::Status& why);
  void BeginRecovery(const absl::Status& why);
  void OnReplacementTimeout();
  void FailAll(const absl::Status& why);
  void CancelTimer(EventLoop::TimerId* id);
  void ScheduleReconnect();
  // Runs `fn` after `delay` on the loop thread unless the session is gone by then.
  EventLoop::TimerId After(absl::Duration delay, absl::AnyInvocable<void()> fn);

  // SCSI commands (session_io.cc).
  void Pump();
  void Issue(Task& task, Connection& conn);
  void Complete(uint32_t itt, absl::StatusOr<ScsiResult> result);
  void HandleDataIn(pdu::ReceivedPdu& pdu);
  std::span<uint8_t> PlaceData(const pdu::Bhs& bhs);
  void HandleScsiResponse(pdu::ReceivedPdu& pdu);
  void HandleR2t(const pdu::Bhs& bhs);
  void OnCommandTimeout(uint32_t itt);
  // One timer per session, not one per command: re-arming a timer for every I/O cost a
  // timerfd_settime syscall and a heap entry that lived for the whole timeout.
  void ArmTimeoutSweep(absl::Duration timeout);
  void SweepTimeouts();
  void RequeueIssued();
  void RequeueAborted(uint64_t lun, uint32_t before_cmd_sn);

  // Control PDUs (session_control.cc).
  uint32_t NextItt();
  pdu::Bhs MakeRequest(pdu::Opcode op, uint8_t flags, bool immediate);
  // On `on` (default: the leading connection).
  void SendControl(OutgoingPdu pdu, ControlHandler handler, Connection* on = nullptr);
  void OnPdu(Connection& c, pdu::ReceivedPdu pdu);
  void FailControls(const absl::Status& why);
  void HandleNopIn(Connection& c, pdu::ReceivedPdu& pdu);
  void HandleAsync(pdu::ReceivedPdu& pdu);
  // The target asked for a logout: issue nothing new, let in-flight commands finish (or
  // the target's deadline pass), log out, then reconnect and carry on (recovery).
  void MaybeLogoutForTarget(bool force = false);
  void HandleReject(pdu::ReceivedPdu& pdu);
  void SendTextRequest(std::string text, uint32_t ttt, std::shared_ptr<std::string> accumulated,
                       absl::AnyInvocable<void(absl::StatusOr<std::string>)> done);
  void StartKeepAlive();
  void KeepAliveTick();
  void Ping(Connection& c);
  static void AckStatSn(Connection& c, const pdu::Bhs& bhs);
  void UpdateWindow(const pdu::Bhs& bhs);
  void ProtocolError(const std::string& what);

  EventLoop* loop_;
  SessionConfig config_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // weak refs guard callbacks
  Phase phase_ = Phase::kIdle;
  bool ever_logged_in_ = false;
  StatusCallback login_done_;
  StatusCallback logout_done_;
  // conns_[0] is the leading connection (while there is one); CIDs are unique.
  std::vector<std::unique_ptr<Connection>> conns_;
  size_t extras_pending_ = 0;
  bool ever_added_ = false;  // extra connections still connecting or logging in
  size_t next_conn_ = 0;     // round robin
  std::optional<InitiatorTransportKind> transport_kind_;  // of the leading connection
  uint64_t connection_generation_ = 0;

  // Session state.
  uint64_t isid_ = 0;
  uint16_t tsih_ = 0;
  login::OperationalParams params_;
  uint32_t cmd_sn_ = 1;
  uint32_t exp_cmd_sn_ = 1;
  uint32_t max_cmd_sn_ = 1;
  uint32_t next_itt_ = 1;
  uint64_t next_order_ = 0;

  std::unordered_map<uint32_t, std::unique_ptr<Task>> tasks_;  // every incomplete command
  std::deque<Task*> pending_;                                  // not (re)issued yet
  size_t in_flight_ = 0;
  std::unordered_map<uint32_t, ControlHandler> controls_;
  std::map<uint64_t, AsyncSenseListener> async_listeners_;

  // Keep-alive and recovery.
  EventLoop::TimerId timeout_sweep_timer_ = 0;
  absl::Duration sweep_period_ = absl::InfiniteDuration();
  EventLoop::TimerId keepalive_timer_ = 0;
  EventLoop::TimerId replacement_timer_ = 0;
  EventLoop::TimerId reconnect_timer_ = 0;
  absl::Duration backoff_;
  bool fail_fast_ = false;         // the replacement timeout passed while disconnected
  bool logout_requested_ = false;  // Async event 1 on this connection
  bool logout_sent_ = false;
  EventLoop::TimerId logout_deadline_timer_ = 0;
  uint64_t reconnects_ = 0;
};

// Connects, logs in as a discovery session, sends SendTargets=All and logs out.
void Discover(EventLoop* loop, SessionConfig config,
              absl::AnyInvocable<void(absl::StatusOr<std::vector<DiscoveredTarget>>)> done);

}  // namespace iser::initiator

#endif  // ISER_INITIATOR_SESSION_H_
