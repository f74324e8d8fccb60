#include "iser/pdu/pdu_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace iser::pdu {
namespace {
constexpr size_t kMaxAhs = 255 * 4;
}

absl::StatusOr<size_t> PduReader::Feed(std::span<const uint8_t> in, bool* complete) {
  *complete = false;
  size_t used = 0;
  while (used < in.size() && !*complete) {
    std::span<const uint8_t> rest = in.subspan(used);
    switch (state_) {
      case State::kBhs: {
        size_t n = std::min(rest.size(), kBhsSize - filled_);
        std::memcpy(header_ + filled_, rest.data(), n);
        filled_ += n;
        used += n;
        if (filled_ == kBhsSize) {
          pdu_ = ReceivedPdu{};
          pdu_.bhs = Bhs(std::span<const uint8_t, kBhsSize>(header_, kBhsSize));
          if (header_check_) {
            if (absl::Status s = header_check_(pdu_.bhs); !s.ok()) return s;
          }
          size_t ahs = pdu_.bhs.ahs_length();
          if (ahs > 0) {
            state_ = State::kAhs;
          } else if (header_digest_) {
            state_ = State::kHeaderDigest;
          } else {
            if (absl::Status s = OnHeaderComplete(); !s.ok()) return s;
            if (state_ == State::kDone) Finish(complete);
            continue;
          }
        }
        break;
      }
      case State::kAhs:
      case State::kHeaderDigest: {
        size_t header_total = kBhsSize + pdu_.bhs.ahs_length() + (header_digest_ ? 4 : 0);
        size_t n = std::min(rest.size(), header_total - filled_);
        std::memcpy(header_ + filled_, rest.data(), n);
        filled_ += n;
        used += n;
        if (filled_ == header_total) {
          if (absl::Status s = OnHeaderComplete(); !s.ok()) return s;
          if (state_ == State::kDone) Finish(complete);
        }
        break;
      }
      case State::kData:
      case State::kPad:
      case State::kDataDigest: {
        std::span<uint8_t> dst = DirectSpan();
        size_t n = std::min(rest.size(), dst.size());
        std::memcpy(dst.data(), rest.data(), n);
        used += n;
        if (absl::Status s = DirectAdvance(n, complete); !s.ok()) return s;
        break;
      }
      case State::kDone:
        return absl::FailedPreconditionError("PduReader: TakePdu() not called");
    }
  }
  return used;
}

absl::Status PduReader::OnHeaderComplete() {
  size_t ahs = pdu_.bhs.ahs_length();
  if (ahs > kMaxAhs) return absl::InvalidArgumentError("AHS too long");
  if (header_digest_) {
    uint32_t want = LoadDigest(header_ + kBhsSize + ahs);
    uint32_t got = ComputeCrc32c({header_, kBhsSize + ahs});
    if (want != got)
      return absl::DataLossError(
          absl::StrFormat("header digest mismatch (0x%08x != 0x%08x)", got, want));
  }
  pdu_.ahs.assign(header_ + kBhsSize, header_ + kBhsSize + ahs);
  uint32_t dsl = pdu_.bhs.data_segment_length();
  if (dsl > max_data_segment_)
    return absl::InvalidArgumentError(
        absl::StrFormat("%s data segment of %u bytes exceeds the limit of %u",
                        OpcodeName(pdu_.bhs.opcode()), dsl, max_data_segment_));
  filled_ = 0;
  data_crc_ = Crc32c();
  if (dsl == 0) {
    state_ = State::kDone;
    return absl::OkStatus();
  }
  std::span<uint8_t> dst;
  if (placement_) dst = placement_(pdu_.bhs, pdu_.ahs);
  if (dst.size() == dsl) {
    pdu_.data = dst;
    pdu_.placed = true;
  } else {
    pdu_.owned.resize(dsl);
    pdu_.data = pdu_.owned;
  }
  state_ = State::kData;
  return absl::OkStatus();
}

std::span<uint8_t> PduReader::DirectSpan() {
  switch (state_) {
    case State::kData:
      return pdu_.data.subspan(filled_);
    case State::kPad:
      return {scratch_ + filled_, PaddedLength(pdu_.data.size()) - pdu_.data.size() - filled_};
    case State::kDataDigest:
      return {scratch_ + filled_, 4 - filled_};
    default:
      return {};
  }
}

absl::Status PduReader::DirectAdvance(size_t n, bool* complete) {
  *complete = false;
  filled_ += n;
  return AfterDataAdvance(complete);
}

absl::Status PduReader::AfterDataAdvance(bool* complete) {
  if (state_ == State::kData && filled_ == pdu_.data.size()) {
    filled_ = 0;
    state_ = PaddedLength(pdu_.data.size()) != pdu_.data.size() ? State::kPad : State::kDataDigest;
    if (data_digest_) data_crc_.Update(pdu_.data);
  }
  if (state_ == State::kPad && filled_ == PaddedLength(pdu_.data.size()) - pdu_.data.size()) {
    if (data_digest_) data_crc_.Update({scratch_, filled_});
    filled_ = 0;
    state_ = State::kDataDigest;
  }
  if (state_ == State::kDataDigest) {
    if (!data_digest_) {
      Finish(complete);
    } else if (filled_ == 4) {
      pdu_.data_digest_ok = LoadDigest(scratch_) == data_crc_.Final();
      Finish(complete);
    }
  }
  return absl::OkStatus();
}

void PduReader::Finish(bool* complete) {
  state_ = State::kDone;
  filled_ = 0;
  *complete = true;
}

ReceivedPdu PduReader::TakePdu() {
  state_ = State::kBhs;
  filled_ = 0;
  return std::move(pdu_);
}

}  // namespace iser::pdu
