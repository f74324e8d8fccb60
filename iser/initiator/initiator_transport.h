// The initiator's connection seam: what the session core asks of the transport under one
// iSCSI connection, and what the transport reports back. The mirror image of
// iser/target/connection_transport.h.
//
// Over TCP, SendCommand writes the SCSI Command PDU with its immediate data, Data-In
// PDUs are received straight into the caller's read buffer (PlaceData) and each R2T is
// answered by SendDataOut from the caller's write buffer (no copy). Over iSER
// (RFC 7145), SendCommand instead advertises STags for the task's buffers: the target
// RDMA-writes read data and RDMA-reads write data, so no Data-In or R2T ever reaches the
// session core. The session code never knows which transport it has.
#ifndef ISER_INITIATOR_INITIATOR_TRANSPORT_H_
#define ISER_INITIATOR_INITIATOR_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "iser/base/event_loop.h"
#include "iser/login/initiator_negotiator.h"
#include "iser/login/negotiation.h"
#include "iser/pdu/bhs.h"
#include "iser/pdu/pdu_reader.h"

namespace iser::initiator {

// A PDU on its way out. `data` points into `owned` or into a caller buffer that outlives
// the send (the command's write buffer).
struct OutgoingPdu {
  pdu::Bhs bhs;
  std::vector<uint8_t> owned;
  std::span<const uint8_t> data;

  void SetOwnedData(std::vector<uint8_t> bytes) {
    owned = std::move(bytes);
    data = owned;
  }
};

// The buffers of one SCSI command, as the transport sees them. Both stay valid until the
// command completes (and, after a connection loss, until it is reissued or failed).
struct TaskIo {
  uint32_t itt = pdu::kReservedTag;
  uint64_t lun_field = 0;             // the command's LUN field (Data-Out repeats it)
  std::span<uint8_t> read;            // Data-In lands here
  std::span<const uint8_t> write;     // Data-Out comes from here
  void* transport_private = nullptr;  // e.g. iSER memory registrations
};

enum class InitiatorTransportKind { kTcp, kIser };

// "tcp" or "iser": the word iser-attach --transport and the StorageClass use.
inline const char* TransportKindName(InitiatorTransportKind kind) {
  return kind == InitiatorTransportKind::kIser ? "iser" : "tcp";
}

// Implemented by the session core; called by a transport on its event loop thread.
class InitiatorTransportEvents {
 public:
  virtual ~InitiatorTransportEvents() = default;
  // A complete PDU arrived (responses, Data-In with its data segment, R2T, NOP-In, ...).
  virtual void OnPduReceived(pdu::ReceivedPdu pdu) = 0;
  // Where the data segment of the PDU whose header is `bhs` goes: for Data-In, the slice
  // of the command's read buffer at its Buffer Offset (zero copy); else an empty span.
  virtual std::span<uint8_t> PlaceData(const pdu::Bhs& bhs) = 0;
  // The connection failed or closed; the transport makes no more calls after this.
  virtual void OnTransportClosed(const absl::Status& why) = 0;
};

// Implemented by each transport; called by the session core on the loop thread.
class InitiatorTransport {
 public:
  virtual ~InitiatorTransport() = default;

  virtual InitiatorTransportKind kind() const = 0;
  virtual std::string peer_address() const = 0;
  // Whether write data past the immediate data should wait for the target to solicit
  // it even where InitialR2T=No allows unsolicited Data-Out (FirstBurstLength is a
  // limit, not a duty: RFC 7143 sec 13.14), and a write that does not fit whole in the
  // immediate data should send none (immediate data is allowed, never required). Over
  // iSER the target fetches solicited data by RDMA Read straight into its buffer, while
  // every unsolicited Data-Out Send, and the immediate part of a longer write, costs it
  // a copy out of a receive buffer (and a Send one of its MaxOutstandingUnexpectedPDUs).
  virtual bool solicit_beyond_immediate() const { return false; }

  // Before the first Login Request: what this transport needs in the login (iSER
  // proposes RDMAExtensions=Yes, declares its receive limits and turns digests off).
  virtual void PrepareLogin(login::InitiatorLoginConfig& config) { (void)config; }
  // Starts receiving; `events` must outlive the transport or the next SetEvents(nullptr).
  virtual void SetEvents(InitiatorTransportEvents* events) = 0;
  // Login is complete: apply negotiated digests and segment limits.
  virtual void ApplyParams(const login::OperationalParams& params) = 0;

  // Sends a control PDU (Login, Text, NOP-Out, Task Management, Logout).
  virtual void SendPdu(OutgoingPdu pdu) = 0;
  // Sends a SCSI Command; `cmd.data` is the immediate data (a prefix of io.write). An
  // RDMA transport registers io.read / io.write here and advertises their STags.
  virtual void SendCommand(OutgoingPdu cmd, TaskIo& io) = 0;
  // Sends write data [offset, offset + length) of io.write as one Data-Out sequence
  // (TTT 0xffffffff: unsolicited data after the command; else the answer to an R2T).
  virtual void SendDataOut(TaskIo& io, uint32_t ttt, uint32_t offset, uint32_t length,
                           uint32_t exp_stat_sn) = 0;
  // The command is finished (or abandoned): drop any per-command transport state.
  virtual void ReleaseTask(TaskIo& io) { (void)io; }

  // Closes now; queued PDUs are dropped. OnTransportClosed follows (deferred). Idempotent.
  virtual void Abort(const absl::Status& why) = 0;
};

// Opens a transport to `portal` ("host:port", "[v6]:port") on `loop`; `done` runs on
// the loop thread exactly once.
using TransportConnectCallback =
    std::function<void(absl::StatusOr<std::unique_ptr<InitiatorTransport>>)>;
using TransportFactory = std::function<void(EventLoop* loop, const std::string& portal,
                                            absl::Duration timeout, TransportConnectCallback done)>;

}  // namespace iser::initiator

#endif  // ISER_INITIATOR_INITIATOR_TRANSPORT_H_
