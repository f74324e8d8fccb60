#include "iser/initiator/lun_handle.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "iser/base/logging.h"

namespace iser::initiator {
namespace {

constexpr uint8_t kStatusGood = 0x00;
constexpr uint8_t kStatusCheckCondition = 0x02;
constexpr uint8_t kStatusBusy = 0x08;
constexpr uint8_t kStatusReservationConflict = 0x18;
constexpr uint8_t kStatusTaskSetFull = 0x28;

struct Sense {
  uint8_t key = 0;
  uint8_t asc = 0;
  uint8_t ascq = 0;
};

Sense ParseSense(std::span<const uint8_t> s) {
  Sense out;
  if (s.empty()) return out;
  uint8_t code = s[0] & 0x7f;
  if ((code == 0x72 || code == 0x73) && s.size() >= 4) {
    out.key = s[1] & 0x0f;
    out.asc = s[2];
    out.ascq = s[3];
  } else if (s.size() >= 14) {
    out.key = s[2] & 0x0f;
    out.asc = s[12];
    out.ascq = s[13];
  } else if (s.size() >= 3) {
    out.key = s[2] & 0x0f;
  }
  return out;
}

void PutBe(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * (bytes - 1 - i)));
}
uint64_t GetBe(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | p[i];
  return v;
}

// Fan-in of several commands into one completion: the first error wins.
struct Join {
  int left = 0;
  absl::Status status;
  IoCallback done;
  void One(absl::Status s) {
    if (!s.ok() && status.ok()) status = s;
    if (--left == 0) done(status);
  }
};

}  // namespace

absl::Status ScsiStatusToStatus(const ScsiResult& r, uint64_t lun) {
  switch (r.status) {
    case kStatusGood:
      return absl::OkStatus();
    case kStatusReservationConflict:
      return absl::FailedPreconditionError(absl::StrCat("LUN ", lun, ": reservation conflict"));
    case kStatusBusy:
    case kStatusTaskSetFull:
      return absl::UnavailableError(absl::StrCat("LUN ", lun, ": target busy"));
    case kStatusCheckCondition:
      break;
    default:
      return absl::InternalError(absl::StrFormat("LUN %d: SCSI status 0x%02x", lun, r.status));
  }
  Sense s = ParseSense(r.sense);
  std::string what = absl::StrFormat("LUN %d: sense key 0x%x ASC/ASCQ 0x%02x/0x%02x", lun, s.key,
                                     s.asc, s.ascq);
  switch (s.key) {
    case 0x5:  // ILLEGAL REQUEST
      if (s.asc == 0x25) return absl::NotFoundError(absl::StrCat("LUN ", lun, " does not exist"));
      if (s.asc == 0x21) return absl::OutOfRangeError(absl::StrCat(what, " (LBA out of range)"));
      return absl::InvalidArgumentError(absl::StrCat(what, " (illegal request)"));
    case 0x3:
      return absl::DataLossError(absl::StrCat(what, " (medium error)"));
    case 0x7:
      return absl::PermissionDeniedError(absl::StrCat(what, " (write protected)"));
    case 0x2:
      return absl::UnavailableError(absl::StrCat(what, " (not ready)"));
    case 0xb:
      return absl::AbortedError(absl::StrCat(what, " (aborted command)"));
    default:
      return absl::InternalError(what);
  }
}

LunHandle::LunHandle(Session* session, uint64_t lun) : session_(session), lun_(lun) {
  std::weak_ptr<int> alive = life_;
  session_->SetAsyncSenseListener(lun_, [this, alive](std::span<const uint8_t> sense) {
    if (alive.lock()) OnSense(sense);
  });
}

LunHandle::~LunHandle() { session_->RemoveAsyncSenseListener(lun_); }

void LunHandle::Attach(Session* session, uint64_t lun,
                       absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<LunHandle>>)> done) {
  std::unique_ptr<LunHandle> handle(new LunHandle(session, lun));
  LunHandle* h = handle.get();
  auto state = std::make_shared<std::pair<std::unique_ptr<LunHandle>, decltype(done)>>(
      std::move(handle), std::move(done));
  ScsiCommand tur;
  tur.lun = lun;
  tur.cdb[0] = 0x00;  // TEST UNIT READY
  h->Execute(tur, false, [h, state](absl::Status s) {
    if (!s.ok()) return state->second(s);
    h->RefreshCapacity([state](absl::Status s) {
      if (!s.ok()) return state->second(s);
      state->second(std::move(state->first));
    });
  });
}

void LunHandle::OnSense(std::span<const uint8_t> sense) {
  Sense s = ParseSense(sense);
  if (s.key == 0x6 && s.asc == 0x2a && s.ascq == 0x09) {
    ISER_LOG(kInfo, "LUN %d: capacity changed; re-reading", lun_);
    RefreshCapacity([](absl::Status) {});
  }
}

void LunHandle::Execute(ScsiCommand command, bool check_underflow, IoCallback done, int retries) {
  std::weak_ptr<int> alive = life_;
  session_->Submit(command, [this, alive, command, check_underflow, done = std::move(done),
                             retries](absl::StatusOr<ScsiResult> r) mutable {
    if (!r.ok()) return done(r.status());
    if (!alive.lock()) return done(absl::AbortedError("LUN handle closed"));
    if (r->status == kStatusCheckCondition && retries > 0) {
      Sense s = ParseSense(r->sense);
      if (s.key == 0x6) {  // UNIT ATTENTION: note it and retry
        if (s.asc == 0x2a && s.ascq == 0x09) {
          ++capacity_changes_;
          RefreshCapacity([](absl::Status) {});
        }
        return Execute(command, check_underflow, std::move(done), retries - 1);
      }
    }
    if ((r->status == kStatusBusy || r->status == kStatusTaskSetFull) && retries > 0) {
      return Execute(command, check_underflow, std::move(done), retries - 1);
    }
    absl::Status s = ScsiStatusToStatus(*r, lun_);
    if (s.ok() && check_underflow && (r->underflow || r->overflow) && r->residual != 0) {
      s = absl::DataLossError(absl::StrCat("LUN ", lun_, ": short transfer, residual ", r->residual));
    }
    done(s);
  });
}

void LunHandle::RefreshCapacity(IoCallback done) {
  auto buf = std::make_shared<std::vector<uint8_t>>(32);
  ScsiCommand c;
  c.lun = lun_;
  c.cdb[0] = 0x9e;  // SERVICE ACTION IN(16)
  c.cdb[1] = 0x10;  // READ CAPACITY(16)
  PutBe(&c.cdb[10], 32, 4);
  c.read = *buf;
  std::weak_ptr<int> alive = life_;
  Execute(c, false, [this, alive, buf, done = std::move(done)](absl::Status s) mutable {
    if (s.ok() && alive.lock()) {
      uint64_t blocks = GetBe(buf->data(), 8) + 1;
      uint32_t bs = static_cast<uint32_t>(GetBe(buf->data() + 8, 4));
      if (bs == 0 || bs % 512 != 0) {
        s = absl::InternalError(absl::StrCat("LUN ", lun_, ": bad block size ", bs));
      } else {
        if (num_blocks_ != 0 && blocks != num_blocks_) ++capacity_changes_;
        num_blocks_ = blocks;
        block_size_ = bs;
        thin_ = (*buf)[14] & 0x80;
      }
    }
    done(s);
  });
}

void LunHandle::Read(uint64_t lba, std::span<uint8_t> buffer, IoCallback done) {
  ReadWrite(false, lba, buffer.data(), buffer.size(), std::move(done));
}

void LunHandle::Write(uint64_t lba, std::span<const uint8_t> data, IoCallback done) {
  ReadWrite(true, lba, const_cast<uint8_t*>(data.data()), data.size(), std::move(done));
}

void LunHandle::ReadAt(uint64_t offset, std::span<uint8_t> buffer, IoCallback done) {
  if (offset % block_size_ != 0) return done(absl::InvalidArgumentError("unaligned offset"));
  Read(offset / block_size_, buffer, std::move(done));
}

void LunHandle::WriteAt(uint64_t offset, std::span<const uint8_t> data, IoCallback done) {
  if (offset % block_size_ != 0) return done(absl::InvalidArgumentError("unaligned offset"));
  Write(offset / block_size_, data, std::move(done));
}

void LunHandle::ReadWrite(bool write, uint64_t lba, uint8_t* data, size_t length,
                          IoCallback done) {
  if (length % block_size_ != 0) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("length ", length, " is not a multiple of the block size ", block_size_)));
  }
  uint64_t blocks = length / block_size_;
  if (lba > num_blocks_ || blocks > num_blocks_ - lba) {
    return done(absl::OutOfRangeError(absl::StrCat("LBA range ", lba, "+", blocks,
                                                   " beyond the LUN's ", num_blocks_, " blocks")));
  }
  if (length == 0) return done(absl::OkStatus());
  size_t chunk = std::max<size_t>(block_size_, max_transfer_bytes_ / block_size_ * block_size_);
  auto join = std::make_shared<Join>();
  join->left = static_cast<int>((length + chunk - 1) / chunk);
  join->done = std::move(done);
  for (size_t off = 0; off < length; off += chunk) {
    size_t n = std::min(chunk, length - off);
    ScsiCommand c;
    c.lun = lun_;
    c.cdb[0] = write ? 0x8a : 0x88;  // WRITE(16) / READ(16)
    PutBe(&c.cdb[2], lba + off / block_size_, 8);
    PutBe(&c.cdb[10], n / block_size_, 4);
    if (write) {
      c.write = std::span<const uint8_t>(data + off, n);
    } else {
      c.read = std::span<uint8_t>(data + off, n);
    }
    Execute(c, true, [join](absl::Status s) { join->One(s); });
  }
}

void LunHandle::Flush(IoCallback done) {
  ScsiCommand c;
  c.lun = lun_;
  c.cdb[0] = 0x35;  // SYNCHRONIZE CACHE(10), whole LUN
  Execute(c, false, std::move(done));
}

void LunHandle::Unmap(uint64_t lba, uint64_t blocks, IoCallback done) {
  if (lba > num_blocks_ || blocks > num_blocks_ - lba) {
    return done(absl::OutOfRangeError("unmap range beyond the LUN"));
  }
  if (blocks == 0) return done(absl::OkStatus());
  constexpr uint64_t kMaxPerDescriptor = 1 << 22;  // stay within common target limits
  constexpr size_t kMaxDescriptors = 64;
  auto join = std::make_shared<Join>();
  join->left = 1;  // released after the loop
  join->done = std::move(done);
  while (blocks > 0) {
    auto params = std::make_shared<std::vector<uint8_t>>(8);
    size_t n = 0;
    while (blocks > 0 && n < kMaxDescriptors) {
      uint64_t count = std::min(blocks, kMaxPerDescriptor);
      size_t at = params->size();
      params->resize(at + 16, 0);
      PutBe(params->data() + at, lba, 8);
      PutBe(params->data() + at + 8, count, 4);
      lba += count;
      blocks -= count;
      ++n;
    }
    PutBe(params->data(), params->size() - 2, 2);
    PutBe(params->data() + 2, n * 16, 2);
    ScsiCommand c;
    c.lun = lun_;
    c.cdb[0] = 0x42;  // UNMAP
    PutBe(&c.cdb[7], params->size(), 2);
    c.write = *params;
    ++join->left;
    Execute(c, false, [join, params](absl::Status s) { join->One(s); });
  }
  join->One(absl::OkStatus());
}

}  // namespace iser::initiator
