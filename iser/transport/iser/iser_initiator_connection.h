// iSER (RFC 7145) on the initiator: the InitiatorTransport for one RDMA connection, the
// mirror image of IserTargetConnection.
//
//   connect        rdma_cm-style: resolve, create the QP, post receives, connect with the
//                  iSER CM header (Linux struct iser_cm_hdr) as private data
//   control PDUs   RDMA Sends of iSER header + BHS (+ data), login included
//   read command   the caller's read buffer is registered (remote write) and advertised
//                  as the Read STag: the target RDMA-writes the data straight into it,
//                  then sends the SCSI Response (with Invalidate of that STag)
//   write command  the caller's write buffer is registered (remote read) and advertised
//                  as the Write STag: solicited data is fetched by the target with RDMA
//                  Read; immediate and unsolicited data go in Sends whose payload SGE
//                  points into the same registration (no copy)
//
// No Data-In, R2T or Data-Out PDU for solicited data crosses the wire, so the session
// core never sees one. Registrations die in ReleaseTask (after the target's invalidation,
// or instead of it), before the session completes the command.
//
// Flow control: the target declares MaxOutstandingUnexpectedPDUs (its posted receives);
// every Send we make for a command (the command, its unsolicited Data-Outs) or a request
// (NOP-Out ping, TMF, Text, Logout) stays outstanding until the answer with its ITT
// arrives, and Sends beyond the limit wait in order. Our own receives: `recv_depth`
// buffers, reposted as soon as each PDU is copied out; we declare
// MaxOutstandingUnexpectedPDUs = recv_depth - max_commands so responses always fit.
#ifndef ISER_TRANSPORT_ISER_ISER_INITIATOR_CONNECTION_H_
#define ISER_TRANSPORT_ISER_ISER_INITIATOR_CONNECTION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/initiator_transport.h"
#include "iser/transport/iser/iser_header.h"
#include "iser/transport/iser/registered_buffer_pool.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/verbs.h"

namespace iser::iser_transport {

struct IserInitiatorOptions {
  uint32_t recv_depth = 320;          // receive buffers posted
  uint32_t max_commands = 256;        // responses we must always have room for
  uint32_t recv_data_segment = 8192;  // InitiatorRecvDataSegmentLength we declare
  uint32_t max_ahs = 256;
  uint32_t send_depth = 512;  // send queue slots; more waits in a FIFO
  uint8_t ird = 16;           // inbound RDMA Reads (the target's Reads of write data)
  bool allow_send_with_invalidate = true;
  softiwarp::SoftIwarpOptions softiwarp;
};

class IserInitiatorConnection final : public initiator::InitiatorTransport {
 public:
  // Connects to `portal` ("host:port", IPv4) over software iWARP; `done` runs on the loop
  // thread exactly once.
  static void Connect(EventLoop* loop, const std::string& portal, absl::Duration timeout,
                      const IserInitiatorOptions& options,
                      initiator::TransportConnectCallback done);
  ~IserInitiatorConnection() override;

  bool solicit_beyond_immediate() const override { return true; }
  initiator::InitiatorTransportKind kind() const override {
    return initiator::InitiatorTransportKind::kIser;
  }
  std::string peer_address() const override { return peer_; }
  void PrepareLogin(login::InitiatorLoginConfig& config) override;
  void SetEvents(initiator::InitiatorTransportEvents* events) override;
  void ApplyParams(const login::OperationalParams& params) override;
  void SendPdu(initiator::OutgoingPdu pdu) override;
  void SendCommand(initiator::OutgoingPdu cmd, initiator::TaskIo& io) override;
  void SendDataOut(initiator::TaskIo& io, uint32_t ttt, uint32_t offset, uint32_t length,
                   uint32_t exp_stat_sn) override;
  void ReleaseTask(initiator::TaskIo& io) override;
  void Abort(const absl::Status& why) override;

  // Counters for tests and the status query.
  uint64_t sends() const { return sends_; }
  uint64_t registrations() const { return registrations_; }
  uint64_t remote_invalidations() const { return remote_invalidations_; }
  uint64_t credit_waits() const { return credit_waits_; }

 private:
  struct Wr;
  struct TaskRegs;  // per ITT: the Read/Write registrations

  IserInitiatorConnection(EventLoop* loop, std::string portal, const IserInitiatorOptions& options);
  absl::Status InitDevice();
  absl::Status CreateQpAndPostReceives();
  void OnCmEvents();
  void OnCqEvent();
  void DrainCq();
  void OnCompletion(const rdma::WorkCompletion& wc);
  void OnRecv(Wr* wr, const rdma::WorkCompletion& wc);
  absl::Status PostRecv(Wr* wr);
  // Queues one Send of iSER header + BHS (+ `payload`, which must stay registered under
  // `payload_lkey` until the Send completes). `itt` != reserved: counts as an unexpected
  // PDU for that task until its answer arrives.
  void QueueSend(const IserHeader& hdr, const pdu::Bhs& bhs, std::span<const uint8_t> payload,
                 uint32_t payload_lkey, bool owned_copy, uint32_t counted_itt);
  void Pump();
  void ReleaseCredits(uint32_t itt);
  void FinishConnect(const absl::Status& status);
  void Fail(const absl::Status& why);
  void FailLater(const absl::Status& why);
  bool dead() const { return closed_ || fail_pending_; }

  EventLoop* loop_;
  std::string peer_;
  IserInitiatorOptions options_;
  initiator::InitiatorTransportEvents* events_ = nullptr;

  // Destroyed bottom-up: id (QP) before CQ and channel, registrations before the pool
  // and PD, everything before the device.
  std::unique_ptr<softiwarp::SoftDevice> device_;
  std::unique_ptr<rdma::CmEventChannel> cm_channel_;
  std::unique_ptr<rdma::ProtectionDomain> pd_;
  std::unique_ptr<RegisteredBufferPool> pool_;
  std::unique_ptr<rdma::CompletionChannel> comp_channel_;
  std::unique_ptr<rdma::CompletionQueue> cq_;
  absl::flat_hash_map<uint32_t, std::unique_ptr<TaskRegs>> tasks_;
  absl::flat_hash_map<uint32_t, uint32_t> unexpected_by_itt_;  // Sends awaiting an answer
  absl::flat_hash_map<Wr*, std::unique_ptr<Wr>> inflight_;
  std::deque<std::unique_ptr<Wr>> waiting_;
  std::unique_ptr<rdma::CmId> id_;
  bool cm_fd_registered_ = false;
  bool cq_fd_registered_ = false;

  // While connecting the connection owns itself; FinishConnect hands it to the caller.
  std::unique_ptr<IserInitiatorConnection> self_;
  initiator::TransportConnectCallback connect_done_;
  EventLoop::TimerId connect_timer_ = 0;
  bool established_ = false;

  bool send_with_invalidate_ok_ = true;  // our CM header did not forbid it

  uint32_t sends_posted_ = 0;
  uint32_t target_recv_dsl_ = 8192;
  uint32_t unexpected_limit_ = 0;  // 0: no limit (the target declared none)
  uint32_t unexpected_outstanding_ = 0;
  bool full_feature_ = false;
  bool closed_ = false;
  bool fail_pending_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  uint64_t sends_ = 0;
  uint64_t registrations_ = 0;
  uint64_t remote_invalidations_ = 0;
  uint64_t credit_waits_ = 0;
};

// The TransportFactory for SessionConfig::transport_factory.
initiator::TransportFactory IserTransportFactory(IserInitiatorOptions options = {});

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_INITIATOR_CONNECTION_H_
