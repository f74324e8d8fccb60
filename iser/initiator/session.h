// One iSCSI initiator session with one connection (RFC 7143), transport-independent.
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

class Session final : public InitiatorTransportEvents {
 public:
  Session(EventLoop* loop, SessionConfig config);
  ~Session() override;
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
  const std::string& transport_name() const { return transport_name_; }
  size_t outstanding() const { return tasks_.size(); }
  // Drops the connection as if the network failed (tests; recovery follows).
  void DropConnection();

  // InitiatorTransportEvents.
  void OnPduReceived(pdu::ReceivedPdu pdu) override;
  std::span<uint8_t> PlaceData(const pdu::Bhs& bhs) override;
  void OnTransportClosed(const absl::Status& why) override;

 private:
  enum class Phase { kIdle, kConnecting, kLogin, kFullFeature, kRecovering, kLoggingOut, kClosed };
  struct Task {
    uint32_t itt = 0;
    uint64_t order = 0;  // submission order: reissue keeps it
    ScsiCommand command;
    ScsiCallback done;
    TaskIo io;
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
  void SendLoginRequest(const login::InitiatorRequest& request);
  void HandleLoginResponse(pdu::ReceivedPdu pdu);
  void LoginFailed(const absl::Status& why);
  void EnterFullFeature(const pdu::Bhs& final_response);
  void CloseTransport(const absl::Status& why);
  void BeginRecovery(const absl::Status& why);
  void OnReplacementTimeout();
  void FailAll(const absl::Status& why);
  void CancelTimer(EventLoop::TimerId* id);
  void ScheduleReconnect();
  // Runs `fn` after `delay` on the loop thread unless the session is gone by then.
  EventLoop::TimerId After(absl::Duration delay, absl::AnyInvocable<void()> fn);

  // SCSI commands (session_io.cc).
  void Pump();
  void Issue(Task& task);
  void Complete(uint32_t itt, absl::StatusOr<ScsiResult> result);
  void HandleDataIn(pdu::ReceivedPdu& pdu);
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
  void SendControl(OutgoingPdu pdu, ControlHandler handler);
  void FailControls(const absl::Status& why);
  void HandleNopIn(const pdu::Bhs& bhs);
  void HandleAsync(pdu::ReceivedPdu& pdu);
  // The target asked for a logout: issue nothing new, let in-flight commands finish (or
  // the target's deadline pass), log out, then reconnect and carry on (recovery).
  void MaybeLogoutForTarget(bool force = false);
  void HandleReject(pdu::ReceivedPdu& pdu);
  void SendTextRequest(std::string text, uint32_t ttt, std::shared_ptr<std::string> accumulated,
                       absl::AnyInvocable<void(absl::StatusOr<std::string>)> done);
  void StartKeepAlive();
  void KeepAliveTick();
  void AckStatSn(const pdu::Bhs& bhs);
  void UpdateWindow(const pdu::Bhs& bhs);
  void ProtocolError(const std::string& what);

  EventLoop* loop_;
  SessionConfig config_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // weak refs guard callbacks
  Phase phase_ = Phase::kIdle;
  bool ever_logged_in_ = false;
  StatusCallback login_done_;
  StatusCallback logout_done_;
  std::unique_ptr<InitiatorTransport> transport_;
  std::string transport_name_;
  uint64_t connection_generation_ = 0;

  // Login.
  std::unique_ptr<login::InitiatorNegotiator> negotiator_;
  login::InitiatorRequest last_login_request_;
  std::string login_text_;  // C-bit reassembly of the current Login Response
  uint32_t login_itt_ = 0;
  EventLoop::TimerId login_timer_ = 0;

  // Session state.
  uint64_t isid_ = 0;
  uint16_t tsih_ = 0;
  login::OperationalParams params_;
  uint32_t cmd_sn_ = 1;
  uint32_t exp_cmd_sn_ = 1;
  uint32_t max_cmd_sn_ = 1;
  uint32_t exp_stat_sn_ = 0;
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
  EventLoop::TimerId ping_timer_ = 0;
  uint64_t rx_pdus_ = 0;
  uint64_t rx_pdus_at_tick_ = 0;
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
