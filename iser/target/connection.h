// The target side of one iSCSI connection: login, then full feature phase dispatch.
//
// Transport-independent: it sees PDUs (TransportEvents) and asks its ConnectionTransport
// to move bytes. The PDU builders below are the shared helpers both transports use (the
// LIO iscsit_build_* shape): TCP turns them into wire PDUs, iSER into Sends.
#ifndef ISER_TARGET_CONNECTION_H_
#define ISER_TARGET_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "iser/base/event_loop.h"
#include "iser/login/negotiation.h"
#include "iser/target/connection_transport.h"
#include "iser/target/session.h"
#include "iser/target/task.h"

namespace iser::target {

class Target;

class Connection : public TransportEvents {
 public:
  Connection(Target* target, std::unique_ptr<ConnectionTransport> transport, uint64_t id);
  ~Connection() override;

  void Start();

  // TransportEvents
  void OnPduReceived(pdu::ReceivedPdu pdu) override;
  void OnPduReceived(pdu::ReceivedPdu pdu, IoBuffer data_buffer) override;
  std::span<uint8_t> PlaceData(const pdu::Bhs& bhs) override;
  absl::Status CheckHeader(const pdu::Bhs& bhs) override;
  void OnTransportClosed(const absl::Status& why) override;

  // ---- PDU builders for transports ----
  // Data-In PDUs for task.scsi.data_in_length bytes, segmented to the initiator's
  // MaxRecvDataSegmentLength, F at each MaxBurstLength; status in the last if asked.
  std::vector<OutgoingPdu> BuildDataIn(Task& task, bool with_status);
  // Next R2T for the task's unsolicited remainder (updates task bookkeeping), or nullopt.
  std::optional<OutgoingPdu> BuildNextR2t(Task& task);
  // Bytes the initiator may send us per PDU / that we may send per PDU.
  uint32_t max_send_segment() const;
  const login::OperationalParams& params() const;

  // ---- used by Target / Session code ----
  uint64_t id() const { return id_; }
  uint16_t cid() const { return cid_; }
  Session* session() const { return session_; }
  ConnectionTransport* transport() const { return transport_.get(); }
  // Forcibly closes (session reinstatement, cold reset, drain timeout).
  void Close(const absl::Status& why);
  void DetachFromSession();  // session is going away
  // Sends an Async Message requesting logout (drain).
  void RequestLogout(uint16_t seconds);
  // A task on this connection finished executing in the SCSI layer.
  void OnScsiDone(Task* task);
  // Called when an aborted task's SCSI execution finished.
  size_t active_task_count() const;

 private:
  enum class Phase { kLogin, kFullFeature, kClosing, kClosed };

  // Login
  void HandleLoginPdu(pdu::ReceivedPdu pdu);
  void SendLoginResponse(const pdu::Bhs& req, const login::LoginResponse& rsp, uint16_t tsih);
  void SendLoginReject(const pdu::Bhs& req, uint8_t status_class, uint8_t status_detail);
  bool CompleteLogin(const pdu::Bhs& req);

  // Full feature phase
  // `data_buffer`: the transport's buffer holding pdu.data, if it handed one over.
  void HandleFfpPdu(pdu::ReceivedPdu pdu, IoBuffer data_buffer);
  bool CheckCmdSn(pdu::ReceivedPdu& pdu, IoBuffer& data_buffer);  // false: drop/queued
  void Dispatch(pdu::ReceivedPdu pdu, IoBuffer data_buffer);
  void HandleScsiCommand(pdu::ReceivedPdu pdu, IoBuffer data_buffer);
  void HandleDataOut(pdu::ReceivedPdu pdu);
  // true: kept for later (with the buffer holding its data, if any)
  bool HoldDataOutOfHeldCommand(pdu::ReceivedPdu& pdu, IoBuffer& data_buffer);
  void HandleNopOut(pdu::ReceivedPdu pdu);
  void HandleTextRequest(pdu::ReceivedPdu pdu);
  void HandleTaskMgmt(pdu::ReceivedPdu pdu);
  void HandleLogout(pdu::ReceivedPdu pdu);
  void SendReject(const pdu::Bhs& rejected, pdu::RejectReason reason);
  void SendNopIn(uint32_t itt, uint32_t ttt, uint64_t lun_field, std::vector<uint8_t> data);
  void ArmNopTimer();
  void OnNopTimer();

  // Tasks
  void StartWriteData(Task* task);
  void ExecuteTask(Task* task);
  void SendScsiResponse(Task* task);
  void FinishTask(Task* task);
  void FillResidual(const Task& task, pdu::Bhs& bhs) const;
  void FillSequence(pdu::Bhs& bhs, bool advance_stat_sn);
  void SendCheckCondition(uint32_t itt, std::vector<uint8_t> sense);

  Target* target_;
  // Kept apart from target_: the connection may be freed (deferred) after the Target.
  EventLoop* loop_;
  std::unique_ptr<ConnectionTransport> transport_;
  uint64_t id_;
  Phase phase_ = Phase::kLogin;
  Session* session_ = nullptr;
  uint16_t cid_ = 0;
  uint32_t stat_sn_ = 0;
  uint32_t next_ttt_ = 1;

  // Login state.
  std::unique_ptr<login::TargetNegotiator> negotiator_;
  std::string login_text_;         // reassembly of C-bit continued requests
  std::string login_pending_out_;  // response text not yet sent (C bit on our side)
  uint64_t login_isid_ = 0;
  uint16_t login_tsih_ = 0;
  uint32_t login_itt_ = 0;
  uint8_t login_version_ = 0;

  // Text continuation (RFC 7143 sec 11.10.2).
  std::string text_pending_out_;
  uint32_t text_ttt_ = pdu::kReservedTag;

  EventLoop::TimerId nop_timer_ = 0;
  EventLoop::TimerId login_timer_ = 0;
  bool nop_outstanding_ = false;
  uint32_t nop_ttt_ = 0;
  absl::Time last_activity_;
};

}  // namespace iser::target

#endif  // ISER_TARGET_CONNECTION_H_
