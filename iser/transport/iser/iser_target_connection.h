// iSER (RFC 7145) on the target: the ConnectionTransport for one RDMA connection.
//
//   control PDUs   <-> RDMA Sends, each starting with the 28-byte iSER header (login
//                      too, as Linux ib_iser/isert do)
//   Data-In        ->  RDMA Write of the read data to the initiator's Read STag, then the
//                      SCSI Response as a Send (with Invalidate of the STag if the peer
//                      allows it); never phase-collapsed
//   R2T/Data-Out   ->  RDMA Read Requests from the initiator's Write STag, one per
//                      solicited burst (the QP keeps at most ORD outstanding); each
//                      completion reaches the core as a Data-Out for that burst, so the
//                      core's write bookkeeping is shared with TCP
//
// No R2T, Data-In or Data-Out PDU is ever sent on the wire. Every local buffer comes
// from a RegisteredBufferPool (registered once, reused).
//
// Receive credits: `recv_depth` receives are posted before the connection is accepted,
// each scattered over three pieces: iSER header + BHS (76 bytes of a per-connection
// slab), a data buffer of TargetRecvDataSegmentLength bytes (an IoBuffer) and an
// overflow piece of MaxAHSLength + 4 bytes in the slab (for what an AHS pushes past the
// data buffer). Each is reposted as soon as its PDU has been handed to the core, so the
// initiator may have recv_depth Sends in flight; the target's login offer should declare
// MaxOutstandingUnexpectedPDUs no larger than that.
//
// Payload copies in user space, per write data path:
//   immediate data      0 when the data starts the data buffer (no AHS) and EDTL fits in
//                       it: the buffer goes to the core with the PDU and becomes the task
//                       buffer; the receive gets a fresh one. Otherwise 1 (the core
//                       copies from the handed-over buffer); 2 only when an AHS pushed the
//                       data past the end of the data buffer (gathered, then copied).
//   unsolicited Data-Out  1 (receive buffer -> task buffer)
//   solicited data      0 (RDMA Read into the task buffer); read data 0 (RDMA Write
//                       from the task buffer)
// Our initiator sends immediate data only for writes that fit whole in the data buffer
// and never sends unsolicited Data-Out, so with it every write is copied 0 times here.
// Below this layer, software iWARP reads small FPDUs (a mean payload under 8 KiB)
// through a 64 KiB read-ahead window and copies each out once (see rx.cc).
#ifndef ISER_TRANSPORT_ISER_ISER_TARGET_CONNECTION_H_
#define ISER_TRANSPORT_ISER_ISER_TARGET_CONNECTION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/target/connection_transport.h"
#include "iser/transport/iser/iser_header.h"
#include "iser/transport/iser/registered_buffer_pool.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::iser_transport {

// What the connections of one portal share: the device, the CM event channel, one PD
// and its buffer pool. Held by shared_ptr so it outlives the last connection whichever
// of portal and target goes first. Members are destroyed bottom-up (pool, PD, channel,
// device), the order verbs requires.
struct IserDeviceContext {
  std::unique_ptr<rdma::Device> device;
  std::unique_ptr<rdma::CmEventChannel> channel;
  std::unique_ptr<rdma::ProtectionDomain> pd;
  std::unique_ptr<RegisteredBufferPool> pool;
  // Receive buffers handed to the core with a SCSI Command's immediate data.
  uint64_t immediate_buffers_handed_over = 0;
};

struct IserConnectionOptions {
  uint32_t recv_depth = 160;          // receive buffers posted (Send credits)
  uint32_t recv_data_segment = 8192;  // TargetRecvDataSegmentLength we accept
  uint32_t max_ahs = 256;
  uint32_t send_depth = 512;  // send queue slots; more waits in a FIFO
  uint8_t ord = 16;           // outbound RDMA Reads outstanding
  uint8_t ird = 16;
  // Linux ib_iser advertises the first solicited byte as the Write Base Offset without
  // negotiating TaggedBufferForSolicitedDataOnly=Yes (and isert reads it that way):
  // true treats every connection as if it had.
  bool write_base_is_first_solicited_byte = false;
};

class IserTargetConnection final : public target::ConnectionTransport {
 public:
  // Creates CQ and QP on `id` (a connect request, not yet accepted) and posts the
  // receive buffers. `send_with_invalidate`: the initiator's iser_cm_hdr allows it.
  static absl::StatusOr<std::unique_ptr<IserTargetConnection>> Create(
      EventLoop* loop, std::shared_ptr<IserDeviceContext> ctx, std::unique_ptr<rdma::CmId> id,
      const IserConnectionOptions& options, bool send_with_invalidate, std::string peer,
      std::string local);
  ~IserTargetConnection() override;

  rdma::CmId* cm_id() const { return id_.get(); }
  // The CM reported the connection gone (DISCONNECTED or an error).
  void OnCmDisconnected();

  // target::ConnectionTransport
  target::TransportKind kind() const override { return target::TransportKind::kIser; }
  std::string peer_address() const override { return peer_; }
  std::string local_address() const override { return local_; }
  void SetEvents(target::TransportEvents* events) override;
  void ApplyParams(const login::OperationalParams& params) override;
  void SendPdu(target::OutgoingPdu pdu) override;
  bool QueueDataIn(target::Task& task, bool with_status) override;
  void GetDataOut(target::Task& task) override;
  void CloseAfterFlush() override;
  void Abort() override;

  // Counters for tests and status.
  uint64_t rdma_writes() const { return rdma_writes_; }
  uint64_t rdma_reads() const { return rdma_reads_; }
  uint64_t sends() const { return sends_; }

 private:
  struct Wr;
  struct ReadSink;
  // STags the initiator advertised for one command (by ITT).
  struct Stags {
    bool write_valid = false, read_valid = false;
    uint32_t write_stag = 0, read_stag = 0;
    uint64_t write_base = 0, read_base = 0;
  };

  IserTargetConnection(EventLoop* loop, std::shared_ptr<IserDeviceContext> ctx,
                       std::unique_ptr<rdma::CmId> id, const IserConnectionOptions& options,
                       bool send_with_invalidate, std::string peer, std::string local);
  absl::Status Init();
  size_t RecvSlotSize() const;
  absl::Status PostRecv(Wr* wr);
  void OnCqEvent();
  void DrainCq();
  void OnCompletion(const rdma::WorkCompletion& wc);
  void OnRecv(Wr* wr, uint32_t len);
  void OnReadDone(Wr* wr);
  void SendHelloReply(const IserHeader& hello);
  void PostSendWr(std::unique_ptr<Wr> wr);
  void PumpSends();
  void MaybeFinishClose();
  void Fail(const absl::Status& why);
  void FailLater(const absl::Status& why);
  bool dead() const { return closed_ || fail_pending_; }

  EventLoop* loop_;
  std::shared_ptr<IserDeviceContext> ctx_;
  IserConnectionOptions options_;
  bool send_with_invalidate_;
  std::string peer_;
  std::string local_;
  target::TransportEvents* events_ = nullptr;

  std::unique_ptr<rdma::CompletionChannel> comp_channel_;
  std::unique_ptr<rdma::CompletionQueue> cq_;
  std::unique_ptr<rdma::CmId> id_;  // owns the QP; destroyed before the CQ
  bool fd_registered_ = false;

  // iSER header + BHS of a received Send: the part of each receive in the slab.
  static constexpr uint32_t kRecvHeadSize = kIserHeaderSize + pdu::kBhsSize;
  RegisteredBufferPool::Lease recv_slab_;  // every receive's header and overflow parts
  absl::flat_hash_map<Wr*, std::unique_ptr<Wr>> inflight_;
  std::deque<std::unique_ptr<Wr>> waiting_;  // send WRs waiting for a free SQ slot
  uint32_t sends_posted_ = 0;

  absl::flat_hash_map<uint32_t, Stags> stags_;
  bool tagged_solicited_only_ = false;
  uint32_t max_outstanding_r2t_ = 1;
  bool full_feature_ = false;
  bool hello_seen_ = false;
  uint64_t ffp_pdus_ = 0;  // control PDUs received after login

  bool close_after_flush_ = false;
  bool closed_ = false;
  bool fail_pending_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  uint64_t rdma_writes_ = 0;
  uint64_t rdma_reads_ = 0;
  uint64_t sends_ = 0;
};

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_TARGET_CONNECTION_H_
