// Device: the LUN map, REPORT LUNS, commands to LUNs that do not exist, and the
// transport's task-management / nexus events fanned out to every logical unit.
#include <map>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "iser/scsi/cdb.h"
#include "iser/scsi/command.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"
#include "iser/scsi/scsi_device.h"

namespace iser::scsi {

struct Device::Impl {
  mutable absl::Mutex mu;
  std::map<uint64_t, std::shared_ptr<LogicalUnit>> lus ABSL_GUARDED_BY(mu);
  std::set<std::string> nexuses ABSL_GUARDED_BY(mu);

  std::shared_ptr<LogicalUnit> Find(uint64_t lun) const {
    absl::MutexLock lock(&mu);
    auto it = lus.find(lun);
    return it == lus.end() ? nullptr : it->second;
  }
  std::vector<std::shared_ptr<LogicalUnit>> All() const {
    absl::MutexLock lock(&mu);
    std::vector<std::shared_ptr<LogicalUnit>> v;
    for (auto& [n, lu] : lus) v.push_back(lu);
    return v;
  }
  void ReportLuns(CommandPtr cmd);
};

namespace {

// SAM-5 4.6: single-level LUN, peripheral device addressing below 256, flat above.
void EncodeLun(uint8_t* p, uint64_t lun) {
  if (lun < 256) {
    p[0] = 0;
    p[1] = uint8_t(lun);
  } else {
    p[0] = uint8_t(0x40 | ((lun >> 8) & 0x3f));
    p[1] = uint8_t(lun);
  }
}

const ItNexus& DefaultNexus() {
  static const ItNexus* n = new ItNexus{.id = 0, .initiator_name = "unknown"};
  return *n;
}

}  // namespace

void Device::Impl::ReportLuns(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  uint8_t select = cdb[2];
  uint32_t alloc = Get32(cdb + 6);
  if (select != 0x00 && select != 0x01 && select != 0x02 && select != 0x10 && select != 0x11 &&
      select != 0x12) {
    FailCdbField(std::move(cmd), 2);
    return;
  }
  if (alloc < 16) {
    FailCdbField(std::move(cmd), 6);
    return;
  }
  std::vector<uint64_t> luns;
  if (select == 0x00 || select == 0x02 || select == 0x11) {
    absl::MutexLock lock(&mu);
    for (auto& [n, lu] : lus) luns.push_back(n);
  }
  if (select == 0x11 && luns.empty()) luns.push_back(0);  // SPC-5: LUN 0 must appear
  std::vector<uint8_t> data(8 + 8 * luns.size(), 0);
  Put32(data.data(), uint32_t(8 * luns.size()));
  for (size_t i = 0; i < luns.size(); ++i) EncodeLun(&data[8 + 8 * i], luns[i]);
  ReturnData(std::move(cmd), data, alloc);
}

Device::Device() : impl_(std::make_unique<Impl>()) {}
Device::~Device() = default;

absl::Status Device::AddLogicalUnit(uint64_t lun, std::shared_ptr<store::BlockStore> store,
                                    LogicalUnitConfig config) {
  if (lun >= 16384) return absl::InvalidArgumentError(absl::StrCat("LUN ", lun, " too big"));
  if (store == nullptr || store->block_size() == 0) {
    return absl::InvalidArgumentError("AddLogicalUnit: no store");
  }
  auto lu = std::make_shared<LogicalUnit>(lun, std::move(store), std::move(config));
  std::vector<std::shared_ptr<LogicalUnit>> others;
  std::set<std::string> nexuses;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->lus.count(lun)) {
      return absl::AlreadyExistsError(absl::StrCat("LUN ", lun, " already exists"));
    }
    for (auto& [n, l] : impl_->lus) others.push_back(l);
    impl_->lus[lun] = lu;
    nexuses = impl_->nexuses;
  }
  for (const std::string& n : nexuses) lu->NexusCreated(n);
  for (auto& l : others) l->AddUaAllExcept("", sense::kReportedLunsDataChanged);
  return absl::OkStatus();
}

LogicalUnit* Device::FindLogicalUnit(uint64_t lun) { return impl_->Find(lun).get(); }

std::vector<uint64_t> Device::Luns() const {
  absl::MutexLock lock(&impl_->mu);
  std::vector<uint64_t> v;
  for (auto& [n, lu] : impl_->lus) v.push_back(n);
  return v;
}

void Device::Execute(ScsiTask& task, absl::AnyInvocable<void()> done) {
  task.status = ScsiStatus::kGood;
  task.sense.clear();
  task.data_in_length = 0;
  task.cdb_transfer_length = 0;
  auto cmd = std::make_unique<Command>(task, std::move(done));
  cmd->nexus_key = NexusKey(task.nexus ? *task.nexus : DefaultNexus());
  if (task.cdb.empty()) {
    Fail(std::move(cmd), sense::kInvalidOpcode);
    return;
  }
  uint8_t opcode = task.cdb[0];
  std::shared_ptr<LogicalUnit> lu = impl_->Find(task.lun);
  if (opcode == op::kReportLuns) {
    if (task.cdb.size() < 12) {
      Fail(std::move(cmd), sense::kInvalidOpcode);
      return;
    }
    if (lu) {
      lu->NexusSeen(cmd->nexus_key);
      cmd->descriptor_sense = lu->mode().d_sense;
    }
    impl_->ReportLuns(std::move(cmd));
    return;
  }
  if (lu == nullptr) {
    if (opcode == op::kInquiry) {
      HandleInquiryNoLun(std::move(cmd));
    } else if (opcode == op::kRequestSense) {
      // SPC-4 5.12: REQUEST SENSE to an unsupported LUN returns the sense data with GOOD.
      std::vector<uint8_t> s =
          BuildSense(sense::kLunNotSupported, task.cdb.size() > 1 && (task.cdb[1] & 0x01));
      uint32_t alloc = task.cdb.size() > 4 ? task.cdb[4] : 0;
      ReturnData(std::move(cmd), s, alloc);
    } else {
      Fail(std::move(cmd), sense::kLunNotSupported);
    }
    return;
  }
  cmd->lu = lu.get();
  lu->Execute(std::move(cmd));
}

void Device::NexusCreated(const ItNexus& nexus) {
  std::string key = NexusKey(nexus);
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->nexuses.insert(key);
  }
  for (auto& lu : impl_->All()) lu->NexusCreated(key);
}

void Device::NexusLost(const ItNexus& nexus) {
  std::string key = NexusKey(nexus);
  for (auto& lu : impl_->All()) lu->NexusLost(key);
}

void Device::LogicalUnitReset(uint64_t lun, const ItNexus& by) {
  if (auto lu = impl_->Find(lun)) lu->Reset(sense::kLunResetOccurred, false);
}

void Device::TargetReset(bool cold, const ItNexus& by) {
  for (auto& lu : impl_->All()) {
    lu->Reset(cold ? sense::kPowerOnOccurred : sense::kPowerOnReset, false);
  }
}

absl::Status Device::Resize(uint64_t lun, uint64_t new_size_bytes) {
  auto lu = impl_->Find(lun);
  if (!lu) return absl::NotFoundError(absl::StrCat("no LUN ", lun));
  if (new_size_bytes % lu->block_size() != 0) {
    return absl::InvalidArgumentError("size is not a multiple of the block size");
  }
  if (lu->store().size_bytes() != new_size_bytes) {
    if (absl::Status s = lu->store().Resize(new_size_bytes); !s.ok()) return s;
  }
  lu->CapacityChanged();
  return absl::OkStatus();
}

}  // namespace iser::scsi
