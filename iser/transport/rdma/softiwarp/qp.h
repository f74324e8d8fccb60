// A software iWARP reliable-connected queue pair: RDMAP over DDP over MPA FPDUs on a
// TCP socket (or any ByteSource/ByteSink pair in tests).
//
// Send side: the send queue plus the inbound-read queue (IRQ, Read Responses owed to
// the peer, at most IRD) and a pending Terminate, scheduled at message boundaries
// (Terminate first, then Read Responses, then the SQ). Outbound Reads wait in the ORQ
// (at most ORD) for their Read Response. SQ completions are reported in posting order.
//
// Receive side: RxMachine reads FPDUs; this class validates each segment (STag, PD,
// access, bounds for tagged; QN/MSN/MO and the receive queue for untagged) and
// answers violations with a Terminate, after which the connection is closed and all
// work requests are flushed. Nothing outside a validated region is ever written.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_QP_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_QP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "iser/base/unique_fd.h"
#include "iser/transport/rdma/softiwarp/byte_io.h"
#include "iser/transport/rdma/softiwarp/cq.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/softiwarp/rx.h"
#include "iser/transport/rdma/softiwarp/tx.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::softiwarp {

// What the MPA handshake negotiated.
struct QpConnParams {
  bool crc = true;
  uint32_t ird = 16;  // inbound Read Requests we accept outstanding
  uint32_t ord = 16;  // outbound Read Requests we keep outstanding
  uint32_t mulpdu = 1024;
  // Initiator with peer-to-peer: the RTR message to send as the first FPDU.
  uint8_t send_rtr = kRtrNone;
  // Responder: hold all transmission until the first FPDU arrived (RFC 5044 7.1.2).
  bool hold_tx_until_rx = false;
  // The EMSS now (0: unknown), read again before a message that needs more than one FPDU
  // so MULPDU follows it. Start() reads TCP_MAXSEG unless the device forces a MULPDU.
  std::function<uint32_t()> current_emss;
};

class SoftQp final : public rdma::QueuePair, private RxHandler {
 public:
  SoftQp(SoftPd* pd, const rdma::QpInitAttr& attr);
  ~SoftQp() override;

  absl::Status PostSend(const rdma::SendWr& wr) override;
  absl::Status PostRecv(const rdma::RecvWr& wr) override;
  uint32_t qp_num() const override { return qpn_; }
  rdma::QpState state() const override { return state_; }
  absl::Status MoveToError() override;

  // Connection plumbing (the CM calls these). `on_closed` runs once when the
  // connection ends for any reason after Start (peer close, Terminate, Disconnect).
  absl::Status Start(UniqueFd fd, const QpConnParams& params, absl::AnyInvocable<void()> on_closed);
  // Same over arbitrary byte streams, without an event loop: tests and the fuzzer call
  // OnReadable()/OnWritable() themselves.
  void StartWithIo(ByteSource* src, ByteSink* sink, const QpConnParams& params);
  void OnReadable();
  void OnWritable();
  void Disconnect();  // rdma_disconnect: flush and close

  // Diagnostics (tests).
  const std::optional<TermError>& terminate_sent() const { return term_sent_; }
  const std::optional<TerminateInfo>& terminate_received() const { return term_received_; }
  uint64_t fpdus_received() const { return rx_.fpdus_received(); }
  size_t max_outstanding_reads() const { return max_orq_; }

 private:
  struct SqWqe {
    uint64_t wr_id = 0;
    rdma::WrOpcode opcode = rdma::WrOpcode::kSend;
    uint32_t flags = 0;
    absl::InlinedVector<rdma::Sge, 4> sges;
    uint32_t inv_rkey = 0;
    uint64_t remote_addr = 0;
    uint32_t rkey = 0;
    uint64_t total = 0;
    absl::InlinedVector<iovec, 4> local;  // resolved SGEs
    enum class St { kQueued, kActive, kAwaitResponse, kDone } st = St::kQueued;
    rdma::WcStatus status = rdma::WcStatus::kSuccess;
    uint64_t progress = 0;  // bytes sent, or Read Response bytes received
  };
  struct RqWqe {
    uint64_t wr_id = 0;
    absl::InlinedVector<iovec, 4> buf;
    uint64_t total = 0;
    uint64_t placed = 0;
    bool active = false;
    rdma::WcStatus status = rdma::WcStatus::kSuccess;
  };
  struct IrqEntry {
    uint32_t sink_stag = 0;
    uint64_t sink_to = 0;
    uint32_t length = 0;
    uint8_t* src = nullptr;
    uint32_t src_stag = 0;
    uint64_t src_to = 0;
    uint32_t sent = 0;
  };
  enum class TxKind { kNone, kSq, kReadResponse, kTerminate, kRtr };

  // RxHandler
  std::optional<TermError> OnSegmentHeader(const RxSegment& seg, std::vector<iovec>* dst) override;
  std::optional<TermError> OnSegmentDone(const RxSegment& seg) override;

  // Transmit.
  void TxPump();
  bool PickNext();
  void PrepareNextFpdu();
  void OnMessageSent();
  // A message's last FPDU is in the batch: move on to the next message now, complete
  // the WQE once the batch is written (CompleteWritten).
  void OnMessagePrepared();
  void CompleteWritten();
  bool ResolveLocal(SqWqe& w, uint32_t access);
  void RefreshMulpdu(uint64_t message_bytes);
  void SetWantWrite(bool want);
  void UpdateInterest();

  // Completion and errors.
  void ReapSq();
  void CompleteRecv(RqWqe& r, bool solicited, uint32_t invalidated);
  void FailWithTerminate(const TermError& err, std::span<const uint8_t> offending);
  void OnPeerTerminate();
  void CloseConnection(rdma::WcStatus first_sq_status);
  void FlushAll(rdma::WcStatus first_sq_status);

  SoftPd* pd_;
  SoftDevice* dev_;
  SoftCq* send_cq_;
  SoftCq* recv_cq_;
  rdma::QpCap cap_;
  bool sq_sig_all_;
  uint32_t qpn_;
  rdma::QpState state_ = rdma::QpState::kInit;
  QpConnParams params_;

  UniqueFd fd_;
  std::unique_ptr<FdByteIo> fd_io_;        // transmit
  std::unique_ptr<StagedFdSource> fd_rx_;  // receive
  ByteSource* src_ = nullptr;
  ByteSink* sink_ = nullptr;
  bool registered_ = false;
  bool want_write_ = false;
  absl::AnyInvocable<void()> on_closed_;
  bool closed_ = false;

  // Send state.
  std::deque<std::unique_ptr<SqWqe>> sq_;
  size_t sq_next_ = 0;      // first SQ entry not yet started
  std::deque<SqWqe*> orq_;  // Reads awaiting their response
  size_t max_orq_ = 0;
  std::deque<IrqEntry> irq_;  // Read Responses owed
  uint32_t tx_msn_[kNumUntaggedQueues] = {1, 1, 1};
  TxKind tx_kind_ = TxKind::kNone;
  SqWqe* tx_wqe_ = nullptr;
  uint64_t tx_offset_ = 0;
  bool tx_last_fpdu_ = false;
  bool tx_hold_ = false;
  bool tx_in_pump_ = false;
  bool close_after_tx_ = false;
  std::vector<uint8_t> term_pending_;
  FpduWriter writer_;
  bool batch_solo_ = false;  // the batch is a Terminate or RTR, alone
  bool tx_pump_scheduled_ = false;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);  // for deferred pumps
  std::vector<SqWqe*> written_pending_;  // prepared in the batch, done once it is written
  std::vector<iovec> scratch_;

  // Receive state.
  RxMachine rx_;
  bool rx_dead_ = false;
  bool rx_in_pump_ = false;
  bool first_rx_seen_ = false;
  std::deque<RqWqe> rq_;
  uint32_t rx_msn_[kNumUntaggedQueues] = {1, 1, 1};
  uint32_t rx_inv_stag_ = 0;
  std::optional<IrqEntry> rx_pending_rreq_;
  uint8_t term_buf_[kMaxTerminatePayload];
  uint32_t term_len_ = 0;
  uint8_t term_hdr_[sizeof(TerminateHdr)];

  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for timers
  std::optional<TermError> term_sent_;
  std::optional<TerminateInfo> term_received_;
};

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_QP_H_
