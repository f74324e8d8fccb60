// READ, WRITE, VERIFY and WRITE AND VERIFY in their 6/10/12/16-byte forms (SBC-3 5.x).
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"
#include "iser/scsi/sbc_common.h"

namespace iser::scsi {

RwCdb ParseRwCdb(const uint8_t* cdb) {
  RwCdb r;
  switch (cdb[0] >> 5) {
    case 0:  // 6-byte
      r.lba = Get24(cdb + 1) & 0x1fffff;
      r.blocks = cdb[4];
      if (r.blocks == 0 && (cdb[0] == op::kRead6 || cdb[0] == op::kWrite6)) r.blocks = 256;
      return r;
    case 1:
    case 2:  // 10-byte
      r.lba = Get32(cdb + 2);
      r.blocks = Get16(cdb + 7);
      break;
    case 5:  // 12-byte
      r.lba = Get32(cdb + 2);
      r.blocks = Get32(cdb + 6);
      break;
    case 4:  // 16-byte
      r.lba = Get64(cdb + 2);
      r.blocks = Get32(cdb + 10);
      break;
    default:
      break;
  }
  r.protect = cdb[1] >> 5;
  r.dpo = cdb[1] & 0x10;
  r.fua = cdb[1] & 0x08;
  r.bytchk = (cdb[1] >> 1) & 0x03;
  r.immed = cdb[1] & 0x02;
  return r;
}

void FailIo(CommandPtr cmd, const absl::Status& status, bool write) {
  if (absl::IsOutOfRange(status)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
  } else if (absl::IsPermissionDenied(status)) {
    Fail(std::move(cmd), sense::kWriteProtected);
  } else {
    Fail(std::move(cmd), write ? sense::kWriteError : sense::kReadError);
  }
}

bool EffectiveFua(const LogicalUnit& lu, bool fua) { return fua || !lu.mode().wce; }

namespace {

uint32_t Clamp32(uint64_t v) { return uint32_t(std::min<uint64_t>(v, 0xffffffffu)); }

// Common checks for the media commands; finishes `cmd` and returns false on error.
bool CheckRw(CommandPtr& cmd, const RwCdb& r, bool write) {
  LogicalUnit& lu = *cmd->lu;
  if (write && lu.WriteProtected()) {
    Fail(std::move(cmd), sense::kWriteProtected);
    return false;
  }
  if (r.protect != 0) {  // no protection information on this LU
    FailCdbField(std::move(cmd), 1, 7);
    return false;
  }
  if (!LbaRangeOk(lu, r.lba, r.blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return false;
  }
  if (r.blocks > lu.limits().max_transfer_blocks) {
    uint8_t op = cmd->cdb()[0];
    uint16_t byte = (op >> 5) == 0 ? 4 : (op >> 5) == 4 ? 10 : (op >> 5) == 5 ? 6 : 7;
    FailCdbField(std::move(cmd), byte);
    return false;
  }
  return true;
}

// Reads [offset, offset + dst.size()) and runs `then(cmd)` on success.
template <typename Then>
void ReadThen(CommandPtr cmd, uint64_t offset, std::span<uint8_t> dst, Then then) {
  store::BlockStore& st = cmd->lu->store();
  st.Read(offset, dst, [cmd = std::move(cmd), then = std::move(then)](absl::Status s) mutable {
    if (!s.ok()) {
      FailIo(std::move(cmd), s, false);
      return;
    }
    then(std::move(cmd));
  });
}

// Compares `expected` (data-out) against `medium`; on a difference fails with MISCOMPARE
// and the byte offset of the first difference in INFORMATION, returning false.
bool CompareOrFail(CommandPtr& cmd, std::span<const uint8_t> expected,
                   std::span<const uint8_t> medium, uint64_t info_base, size_t period) {
  for (size_t i = 0; i < medium.size(); ++i) {
    uint8_t want = period ? expected[i % period] : expected[i];
    if (want != medium[i]) {
      Fail(std::move(cmd), sense::kMiscompareDuringVerify,
           SenseDetail{.information = info_base + i});
      return false;
    }
  }
  return true;
}

}  // namespace

void HandleRead(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  LogicalUnit& lu = *cmd->lu;
  uint32_t bs = lu.block_size();
  cmd->task.cdb_transfer_length = Clamp32(r.blocks * bs);
  if (!CheckRw(cmd, r, false)) return;
  uint64_t bytes = r.blocks * bs;
  size_t room = cmd->task.data_in.size();
  if (bytes == 0 || room == 0) {
    Complete(std::move(cmd));
    return;
  }
  uint64_t offset = r.lba * bs;
  if (room >= bytes) {
    std::span<uint8_t> dst = cmd->task.data_in.first(bytes);
    ReadThen(std::move(cmd), offset, dst, [bytes](CommandPtr c) {
      c->task.data_in_length = uint32_t(bytes);
      Complete(std::move(c));
    });
    return;
  }
  // EDTL is shorter than the transfer: read the blocks that (partly) fit, send what fits.
  uint64_t blocks = (room + bs - 1) / bs;
  auto tmp = std::make_shared<std::vector<uint8_t>>(blocks * bs);
  ReadThen(std::move(cmd), offset, std::span<uint8_t>(*tmp), [tmp, room](CommandPtr c) {
    std::memcpy(c->task.data_in.data(), tmp->data(), room);
    c->task.data_in_length = uint32_t(room);
    Complete(std::move(c));
  });
}

namespace {

// Writes the whole blocks of data-out the transfer covers, then runs `then`.
template <typename Then>
void WriteBlocks(CommandPtr cmd, const RwCdb& r, Then then) {
  LogicalUnit& lu = *cmd->lu;
  uint32_t bs = lu.block_size();
  uint64_t bytes = std::min<uint64_t>(r.blocks * bs, cmd->task.data_out.size() / bs * bs);
  if (bytes == 0) {
    then(std::move(cmd), 0);
    return;
  }
  std::span<const uint8_t> src = cmd->task.data_out.first(bytes);
  bool fua = EffectiveFua(lu, r.fua);
  lu.store().Write(r.lba * bs, src, fua,
                   [cmd = std::move(cmd), then = std::move(then), bytes](absl::Status s) mutable {
                     if (!s.ok()) {
                       FailIo(std::move(cmd), s, true);
                       return;
                     }
                     then(std::move(cmd), bytes);
                   });
}

}  // namespace

void HandleWrite(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  cmd->task.cdb_transfer_length = Clamp32(r.blocks * cmd->lu->block_size());
  if (!CheckRw(cmd, r, true)) return;
  WriteBlocks(std::move(cmd), r, [](CommandPtr c, uint64_t) { Complete(std::move(c)); });
}

void HandleVerify(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  LogicalUnit& lu = *cmd->lu;
  uint32_t bs = lu.block_size();
  if (r.bytchk == 1) {
    cmd->task.cdb_transfer_length = Clamp32(r.blocks * bs);
  } else if (r.bytchk == 3) {
    cmd->task.cdb_transfer_length = r.blocks ? bs : 0;
  }
  if (r.bytchk == 2) {
    FailCdbField(std::move(cmd), 1, 2);
    return;
  }
  if (!CheckRw(cmd, r, false)) return;
  if (r.blocks == 0) {
    Complete(std::move(cmd));
    return;
  }
  uint64_t offset = r.lba * bs;
  if (r.bytchk == 0) {
    // Medium verification: the data is readable, nothing to compare.
    auto tmp = std::make_shared<std::vector<uint8_t>>(std::min<uint64_t>(r.blocks * bs, bs));
    ReadThen(std::move(cmd), offset, std::span<uint8_t>(*tmp),
             [tmp](CommandPtr c) { Complete(std::move(c)); });
    return;
  }
  std::span<const uint8_t> expected = cmd->task.data_out;
  uint64_t compare_blocks = r.bytchk == 1 ? std::min<uint64_t>(r.blocks, expected.size() / bs)
                                          : (expected.size() >= bs ? r.blocks : 0);
  if (compare_blocks == 0) {
    Fail(std::move(cmd), sense::kInvalidFieldInInformationUnit);
    return;
  }
  auto tmp = std::make_shared<std::vector<uint8_t>>(compare_blocks * bs);
  size_t period = r.bytchk == 3 ? bs : 0;
  ReadThen(std::move(cmd), offset, std::span<uint8_t>(*tmp), [tmp, expected, period](CommandPtr c) {
    if (!CompareOrFail(c, expected, *tmp, 0, period)) return;
    Complete(std::move(c));
  });
}

void HandleWriteVerify(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  cmd->task.cdb_transfer_length = Clamp32(r.blocks * cmd->lu->block_size());
  if (cmd->cdb()[1] & 0x04) {  // BYTCHK values other than 0 and 1 are reserved
    FailCdbField(std::move(cmd), 1, 2);
    return;
  }
  if (!CheckRw(cmd, r, true)) return;
  // Written data is durable before the verify (FUA); the store returns what it stored.
  r.fua = true;
  WriteBlocks(std::move(cmd), r, [](CommandPtr c, uint64_t bytes) {
    if (bytes == 0) {
      Complete(std::move(c));
      return;
    }
    uint64_t offset = ParseRwCdb(c->cdb()).lba * c->lu->block_size();
    auto tmp = std::make_shared<std::vector<uint8_t>>(bytes);
    ReadThen(std::move(c), offset, std::span<uint8_t>(*tmp), [tmp](CommandPtr c2) {
      std::span<const uint8_t> expected = c2->task.data_out.first(tmp->size());
      if (!CompareOrFail(c2, expected, *tmp, 0, 0)) return;
      Complete(std::move(c2));
    });
  });
}

}  // namespace iser::scsi
