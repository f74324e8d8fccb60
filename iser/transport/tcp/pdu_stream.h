// iSCSI PDUs over one non-blocking TCP socket (RFC 7143 framing), shared by the target's
// and the initiator's TCP transports.
//
// Receive: a staging buffer feeds the resumable PduReader; a large data-segment
// remainder is received straight into the buffer the owner chose (place_data), so payload
// is not copied through staging. Send: a FIFO of PDUs written with writev, header/data
// digests computed here, one flush per event-loop batch (EventLoop::Defer).
#ifndef ISER_TRANSPORT_TCP_PDU_STREAM_H_
#define ISER_TRANSPORT_TCP_PDU_STREAM_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"
#include "iser/pdu/outgoing_pdu.h"
#include "iser/pdu/pdu_reader.h"

namespace iser::transport {

class PduStream {
 public:
  struct Callbacks {
    // Screens each 48-byte header as soon as it arrives; an error closes the stream.
    std::function<absl::Status(const pdu::Bhs&)> check_header;
    // Where a PDU's data segment goes (exactly data_segment_length() bytes), or empty.
    std::function<std::span<uint8_t>(const pdu::Bhs&)> place_data;
    std::function<void(pdu::ReceivedPdu)> on_pdu;
    // Called once, when the stream closes for any reason (OK status: orderly close).
    std::function<void(const absl::Status&)> on_closed;
  };

  // `preread`: bytes already taken off the socket that belong at the start of the stream.
  // `staging_bytes`: receive staging buffer size (large segments bypass it anyway).
  PduStream(EventLoop* loop, UniqueFd fd, std::vector<uint8_t> preread = {},
            size_t staging_bytes = 256 << 10);
  ~PduStream();
  PduStream(const PduStream&) = delete;
  PduStream& operator=(const PduStream&) = delete;

  absl::Status Start(Callbacks callbacks);

  // Digests apply to PDUs queued from now on (a login response queued before the switch
  // goes without), and to PDUs received after the current one.
  void SetDigests(bool header, bool data);
  void SetMaxReceiveSegment(uint32_t bytes) { reader_.set_max_data_segment(bytes); }

  void Send(pdu::OutgoingPdu pdu);
  // Sends what is queued, then closes. Idempotent.
  void CloseAfterFlush();
  // Closes now, dropping what is queued; on_closed runs before it returns. Idempotent.
  void Close(const absl::Status& why);
  bool closed() const { return closed_; }

  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Wire {
    pdu::OutgoingPdu pdu;
    uint8_t header_digest[4];
    bool has_header_digest = false;
    uint8_t trailer[8];  // pad (0-3) + data digest (4)
    size_t trailer_len = 0;
    size_t total = 0;  // bytes on the wire
  };

  void OnEvents(uint32_t events);
  void HandleReadable();
  bool FeedStaging();  // false: stop reading (closed)
  void Deliver();
  void ScheduleFlush();
  void Flush();

  EventLoop* loop_;
  UniqueFd fd_;
  Callbacks callbacks_;
  pdu::PduReader reader_;
  std::vector<uint8_t> staging_;
  size_t staging_begin_ = 0;
  size_t staging_end_ = 0;
  size_t staging_read_cap_ = static_cast<size_t>(-1);  // see kHeaderWindow
  bool header_digest_ = false;
  bool data_digest_ = false;

  std::deque<Wire> send_queue_;
  size_t front_sent_ = 0;  // bytes of send_queue_.front() already written
  bool flush_scheduled_ = false;
  bool want_writable_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;
  bool watching_ = false;

  uint64_t bytes_received_ = 0;
  uint64_t bytes_sent_ = 0;
  // Deferred work checks this is still alive: the owner may free the stream first.
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace iser::transport

#endif  // ISER_TRANSPORT_TCP_PDU_STREAM_H_
