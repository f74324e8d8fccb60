// Resumable iSCSI PDU decoder over a byte stream (the SPDK iscsi_read_pdu shape).
//
// Feed() takes whatever bytes arrived and stops at each PDU boundary; input may be split
// at any offset. A data segment can be placed straight into a caller-chosen buffer (the
// task's buffer for Data-Out), and a large remainder can be received directly into it
// with DirectSpan()/DirectAdvance(), so payload is not copied through a staging buffer.
#ifndef ISER_PDU_PDU_READER_H_
#define ISER_PDU_PDU_READER_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "iser/pdu/bhs.h"
#include "iser/pdu/digest.h"

namespace iser::pdu {

struct ReceivedPdu {
  Bhs bhs;
  std::vector<uint8_t> ahs;
  std::vector<uint8_t> owned;  // backing for `data` unless it was placed externally
  std::span<uint8_t> data;     // the data segment, without padding
  bool placed = false;         // data went to the buffer the placement callback chose
  bool data_digest_ok = true;  // false: DataDigest mismatch (answer with Reject)
};

class PduReader {
 public:
  // Chooses where a data segment goes: a span of exactly data_segment_length() bytes,
  // or an empty span to let the reader allocate. Called once the header is complete.
  using Placement = std::function<std::span<uint8_t>(const Bhs&, std::span<const uint8_t> ahs)>;

  PduReader() = default;
  void set_header_digest(bool on) { header_digest_ = on; }
  void set_data_digest(bool on) { data_digest_ = on; }
  // Largest data segment accepted; larger ones are a framing error (the stream can't be
  // trusted any more, so the connection closes).
  void set_max_data_segment(uint32_t max) { max_data_segment_ = max; }
  void set_placement(Placement p) { placement_ = std::move(p); }
  // Looks at each 48-byte BHS as soon as it is complete (before any AHS or data arrive);
  // an error ends the stream, so a peer speaking nonsense is dropped at once.
  void set_header_check(std::function<absl::Status(const Bhs&)> check) {
    header_check_ = std::move(check);
  }

  // Consumes bytes from `in` up to the end of the current PDU at most. Returns the number
  // consumed; *complete is set when a PDU is ready for TakePdu(). Errors (bad header
  // digest, oversized segment) are fatal for the stream.
  absl::StatusOr<size_t> Feed(std::span<const uint8_t> in, bool* complete);

  // While receiving a data segment: the span the next bytes belong in (may be empty
  // when the reader is in a header state); use it to recv() payload in place.
  std::span<uint8_t> DirectSpan();
  absl::Status DirectAdvance(size_t n, bool* complete);

  ReceivedPdu TakePdu();

  bool at_pdu_boundary() const { return state_ == State::kBhs && filled_ == 0; }

 private:
  enum class State { kBhs, kAhs, kHeaderDigest, kData, kPad, kDataDigest, kDone };
  absl::Status OnHeaderComplete();
  absl::Status AfterDataAdvance(bool* complete);
  void Finish(bool* complete);

  bool header_digest_ = false;
  bool data_digest_ = false;
  uint32_t max_data_segment_ = 8192;
  Placement placement_;
  std::function<absl::Status(const Bhs&)> header_check_;

  State state_ = State::kBhs;
  size_t filled_ = 0;                    // bytes of the current part received
  uint8_t header_[kBhsSize + 1024 + 4];  // BHS + AHS (<= 255 words) + digest, contiguous
  uint8_t scratch_[4];                   // padding / data digest
  ReceivedPdu pdu_;
  Crc32c data_crc_;
};

}  // namespace iser::pdu

#endif  // ISER_PDU_PDU_READER_H_
