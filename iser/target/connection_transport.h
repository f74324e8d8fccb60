// The connection seam (LIO's iscsit_transport): what the target's session code asks of
// the transport under one iSCSI connection, and what the transport reports back.
//
// Over TCP, QueueDataIn becomes Data-In PDUs and GetDataOut becomes R2Ts answered by
// Data-Out PDUs; over iSER they become RDMA Writes and RDMA Reads. The session code
// never knows which it has.
#ifndef ISER_TARGET_CONNECTION_TRANSPORT_H_
#define ISER_TARGET_CONNECTION_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "iser/base/io_buffer.h"
#include "iser/login/negotiation.h"
#include "iser/pdu/bhs.h"
#include "iser/pdu/outgoing_pdu.h"
#include "iser/pdu/pdu_reader.h"

namespace iser::target {

class Task;

using OutgoingPdu = pdu::OutgoingPdu;

enum class TransportKind { kTcp, kIser };
const char* TransportKindName(TransportKind kind);

// Implemented by the connection core (iser/target/connection.h); called by a transport
// on its event loop thread.
class TransportEvents {
 public:
  virtual ~TransportEvents() = default;
  // A complete PDU arrived (control PDUs and Data-Out, with data segment).
  virtual void OnPduReceived(pdu::ReceivedPdu pdu) = 0;
  // As above, for a SCSI Command whose immediate data the transport received into a
  // buffer it hands over with the PDU (pdu.data points into `data_buffer`): the command
  // adopts it as its task buffer when the data starts it and EDTL fits, so the write
  // data is never copied; otherwise it is copied once into the task buffer.
  virtual void OnPduReceived(pdu::ReceivedPdu pdu, IoBuffer data_buffer) = 0;
  // Where the data segment of the PDU whose header is `bhs` should be received (zero
  // copy into a task buffer), or an empty span.
  virtual std::span<uint8_t> PlaceData(const pdu::Bhs& bhs) = 0;
  // Screens a header as soon as its 48 bytes are in; an error closes the connection.
  virtual absl::Status CheckHeader(const pdu::Bhs& bhs) = 0;
  // The connection failed or closed; the transport makes no more calls after this.
  virtual void OnTransportClosed(const absl::Status& why) = 0;
};

// Implemented by each transport; called by the connection core.
class ConnectionTransport {
 public:
  virtual ~ConnectionTransport() = default;

  virtual TransportKind kind() const = 0;
  virtual std::string peer_address() const = 0;
  virtual std::string local_address() const = 0;

  virtual void SetEvents(TransportEvents* events) = 0;
  // Login is complete; apply negotiated digests and segment limits.
  virtual void ApplyParams(const login::OperationalParams& params) = 0;

  // Sends a control PDU (responses, NOP-In, Reject, Async, Text, Login, Logout, R2T).
  virtual void SendPdu(OutgoingPdu pdu) = 0;
  // Delivers the task's read data (task.scsi.data_in_length bytes of task.buffer, capped
  // at EDTL) to the initiator; it may take ownership of task.buffer. If `with_status`
  // the transport may send the status along (phase collapse over TCP): it returns true
  // when it did, false when the core must send a SCSI Response.
  virtual bool QueueDataIn(Task& task, bool with_status) = 0;
  // Fetches the task's outstanding solicited write data (beyond what arrived
  // immediate/unsolicited); the core learns of progress through Data-Out PDUs (TCP) or a
  // completion (iSER).
  virtual void GetDataOut(Task& task) = 0;

  // Sends everything queued, then closes (logout). Idempotent.
  virtual void CloseAfterFlush() = 0;
  // Closes now; queued PDUs are dropped (their on_sent still runs). Idempotent.
  virtual void Abort() = 0;
};

}  // namespace iser::target

#endif  // ISER_TARGET_CONNECTION_TRANSPORT_H_
