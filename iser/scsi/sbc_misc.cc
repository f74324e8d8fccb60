// READ CAPACITY, GET LBA STATUS, SYNCHRONIZE CACHE, PRE-FETCH, UNMAP and WRITE SAME
// (SBC-3 5.x).
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"
#include "iser/scsi/sbc_common.h"

namespace iser::scsi {

namespace {

struct Extent {
  uint64_t offset;
  uint64_t length;
};

// Runs `op(extent, callback)` for each extent in order, then completes `cmd`. Loops while
// the store completes inline and resumes from the callback when it does not.
struct ExtentChain {
  CommandPtr cmd;
  std::vector<Extent> extents;
  size_t next = 0;
  bool failed = false;
  bool write = true;
  absl::AnyInvocable<void(const Extent&, store::IoCallback)> op;

  static void Run(std::shared_ptr<ExtentChain> c) {
    while (c->next < c->extents.size()) {
      const Extent e = c->extents[c->next++];
      auto step = std::make_shared<int>(0);  // 0 in op, 1 completed inline, 2 async
      c->op(e, [c, step](absl::Status s) {
        if (!s.ok()) {
          c->failed = true;
          FailIo(std::move(c->cmd), s, c->write);
          return;
        }
        if (*step == 0) {
          *step = 1;
          return;
        }
        Run(c);
      });
      if (c->failed) return;
      if (*step == 1) continue;
      *step = 2;
      return;
    }
    Complete(std::move(c->cmd));
  }
};

void RunExtents(CommandPtr cmd, std::vector<Extent> extents, bool write,
                absl::AnyInvocable<void(const Extent&, store::IoCallback)> op) {
  auto chain = std::make_shared<ExtentChain>();
  chain->cmd = std::move(cmd);
  chain->extents = std::move(extents);
  chain->op = std::move(op);
  chain->write = write;
  ExtentChain::Run(std::move(chain));
}

}  // namespace

void HandleReadCapacity10(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool pmi = cdb[8] & 0x01;
  if (!pmi && Get32(cdb + 2) != 0) {
    FailCdbField(std::move(cmd), 2);
    return;
  }
  LogicalUnit& lu = *cmd->lu;
  uint64_t last = lu.num_blocks() ? lu.num_blocks() - 1 : 0;
  uint8_t d[8];
  Put32(d, last > 0xffffffffull ? 0xffffffffu : uint32_t(last));
  Put32(d + 4, lu.block_size());
  ReturnData(std::move(cmd), d, sizeof(d));
}

void HandleReadCapacity16(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  uint32_t alloc = Get32(cdb + 10);
  LogicalUnit& lu = *cmd->lu;
  uint64_t last = lu.num_blocks() ? lu.num_blocks() - 1 : 0;
  uint8_t d[32] = {};
  Put64(d, last);
  Put32(d + 8, lu.block_size());
  d[13] = lu.limits().physical_exponent & 0x0f;          // LBPPBE
  if (lu.store().supports_unmap()) d[14] = 0x80 | 0x40;  // LBPME, LBPRZ
  ReturnData(std::move(cmd), d, alloc);
}

void HandleGetLbaStatus(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  uint64_t lba = Get64(cdb + 2);
  uint32_t alloc = Get32(cdb + 10);
  LogicalUnit& lu = *cmd->lu;
  uint64_t cap = lu.num_blocks();
  if (lba >= cap) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  uint32_t bs = lu.block_size();
  std::vector<uint8_t> d(8, 0);
  size_t max_desc = alloc > 8 ? std::min<size_t>((alloc - 8 + 15) / 16, 512) : 1;
  uint64_t pos = lba;
  while (pos < cap && (d.size() - 8) / 16 < max_desc) {
    uint64_t remain = std::min<uint64_t>(cap - pos, 0xffffffffull);
    absl::StatusOr<store::LbaRun> run = lu.store().GetLbaStatus(pos * bs, remain * bs);
    if (!run.ok()) {
      FailIo(std::move(cmd), run.status(), false);
      return;
    }
    uint64_t blocks = std::min<uint64_t>(run->length / bs, remain);
    if (blocks == 0) blocks = 1;
    uint8_t desc[16] = {};
    Put64(desc, pos);
    Put32(desc + 8, uint32_t(blocks));
    desc[12] = run->mapped ? 0x00 : 0x01;
    d.insert(d.end(), desc, desc + 16);
    pos += blocks;
  }
  Put32(d.data(), uint32_t(d.size() - 4));
  ReturnData(std::move(cmd), d, alloc);
}

void HandleSynchronizeCache(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  if (!LbaRangeOk(*cmd->lu, r.lba, r.blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  store::BlockStore& st = cmd->lu->store();
  st.Flush([cmd = std::move(cmd)](absl::Status s) mutable {
    if (!s.ok()) {
      FailIo(std::move(cmd), s, true);
      return;
    }
    Complete(std::move(cmd));
  });
}

void HandlePreFetch(CommandPtr cmd) {
  RwCdb r = ParseRwCdb(cmd->cdb());
  if (!LbaRangeOk(*cmd->lu, r.lba, r.blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  // Nothing is cached here; the blocks are as "prefetched" as they will get.
  Complete(std::move(cmd));
}

void HandleUnmap(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  if (!lu.store().supports_unmap()) {
    Fail(std::move(cmd), sense::kInvalidOpcode);
    return;
  }
  uint32_t len = Get16(cdb + 7);
  cmd->task.cdb_transfer_length = len;
  if (lu.WriteProtected()) {
    Fail(std::move(cmd), sense::kWriteProtected);
    return;
  }
  if (cdb[1] & 0x01) {  // ANCHOR: anchored LBAs are not supported (ANC_SUP = 0)
    FailCdbField(std::move(cmd), 1, 0);
    return;
  }
  if (len == 0) {
    Complete(std::move(cmd));
    return;
  }
  std::span<const uint8_t> data = cmd->task.data_out;
  if (len < 8 || data.size() < 8) {
    Fail(std::move(cmd), sense::kParameterListLengthError);
    return;
  }
  data = data.first(std::min<size_t>(len, data.size()));
  uint32_t bd_len = Get16(&data[2]);
  if (bd_len > data.size() - 8) {
    Fail(std::move(cmd), sense::kParameterListLengthError);
    return;
  }
  size_t n = bd_len / 16;
  if (n > lu.limits().max_unmap_descriptors) {
    FailParamField(std::move(cmd), 2);
    return;
  }
  uint32_t bs = lu.block_size();
  std::vector<Extent> extents;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* d = &data[8 + 16 * i];
    uint64_t lba = Get64(d);
    uint32_t count = Get32(d + 8);
    if (!LbaRangeOk(lu, lba, count)) {
      Fail(std::move(cmd), sense::kLbaOutOfRange);
      return;
    }
    if (count > lu.limits().max_unmap_blocks) {
      FailParamField(std::move(cmd), uint16_t(8 + 16 * i + 8));
      return;
    }
    if (count) extents.push_back({lba * bs, uint64_t(count) * bs});
  }
  store::BlockStore* st = &lu.store();
  RunExtents(std::move(cmd), std::move(extents), true, [st](const Extent& e, store::IoCallback cb) {
    st->Unmap(e.offset, e.length, std::move(cb));
  });
}

void HandleWriteSame(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  bool sixteen = cdb[0] == op::kWriteSame16;
  uint8_t flags = cdb[1];
  uint8_t wrprotect = flags >> 5;
  bool anchor = flags & 0x10;
  bool unmap = flags & 0x08;
  bool ndob = sixteen && (flags & 0x01);
  uint64_t lba = sixteen ? Get64(cdb + 2) : Get32(cdb + 2);
  uint64_t blocks = sixteen ? Get32(cdb + 10) : Get16(cdb + 7);
  uint32_t bs = lu.block_size();
  cmd->task.cdb_transfer_length = ndob ? 0 : bs;
  if (lu.WriteProtected()) {
    Fail(std::move(cmd), sense::kWriteProtected);
    return;
  }
  if (wrprotect) {
    FailCdbField(std::move(cmd), 1, 7);
    return;
  }
  if (anchor) {  // ANC_SUP = 0 (and ANCHOR without UNMAP is invalid anyway)
    FailCdbField(std::move(cmd), 1, 4);
    return;
  }
  if (!LbaRangeOk(lu, lba, blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  if (blocks == 0) blocks = lu.num_blocks() - lba;  // WSNZ = 0: to the end of the medium
  if (blocks > lu.limits().max_write_same_blocks) {
    FailCdbField(std::move(cmd), sixteen ? 10 : 7);
    return;
  }
  std::span<const uint8_t> pattern;
  if (!ndob) {
    if (cmd->task.data_out.size() != bs) {
      Fail(std::move(cmd), sense::kInvalidFieldInCdb);
      return;
    }
    pattern = cmd->task.data_out;
  }
  if (blocks == 0) {
    Complete(std::move(cmd));
    return;
  }
  store::BlockStore* st = &lu.store();
  // UNMAP = 1 on a thin LU deallocates whatever the data (LBPRZ: reads return zeroes), as
  // libiscsi's WriteSame*.Unmap* expect.
  bool dealloc = unmap && st->supports_unmap();
  bool zero =
      dealloc || ndob || std::all_of(pattern.begin(), pattern.end(), [](uint8_t b) { return !b; });
  uint64_t offset = lba * bs;
  uint64_t length = blocks * bs;
  if (zero) {
    RunExtents(std::move(cmd), {{offset, length}}, true,
               [st, dealloc](const Extent& e, store::IoCallback cb) {
                 if (dealloc) {
                   st->Unmap(e.offset, e.length, std::move(cb));
                 } else {
                   st->WriteZeroes(e.offset, e.length, false, std::move(cb));
                 }
               });
    return;
  }
  // Replicate the block into a buffer of up to 1 MiB and write it chunk by chunk.
  uint64_t chunk_blocks = std::max<uint64_t>(1, std::min<uint64_t>(blocks, (1u << 20) / bs));
  auto buf = std::make_shared<std::vector<uint8_t>>(chunk_blocks * bs);
  for (uint64_t i = 0; i < chunk_blocks; ++i) {
    std::memcpy(buf->data() + i * bs, pattern.data(), bs);
  }
  std::vector<Extent> extents;
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(length - done, buf->size());
    extents.push_back({offset + done, n});
    done += n;
  }
  bool fua = EffectiveFua(lu, false);
  RunExtents(std::move(cmd), std::move(extents), true,
             [st, buf, fua](const Extent& e, store::IoCallback cb) {
               st->Write(e.offset, std::span<const uint8_t>(buf->data(), e.length), fua,
                         std::move(cb));
             });
}

}  // namespace iser::scsi
