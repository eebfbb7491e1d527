"""The console's message catalogue: zh-CN (the default) and English, one key per string."""

from __future__ import annotations

from typing import Any

from gateway.console.i18n_market import MESSAGES as MARKET_MESSAGES
from gateway.console.i18n_passkeys import MESSAGES as PASSKEY_MESSAGES

DEFAULT = "zh-CN"
LANGUAGES = ("zh-CN", "en")

# key: (zh-CN, en). Templates say t("key"); no user-facing text is written in a template.
_MESSAGES: dict[str, tuple[str, str]] = {
    "app": ("公共数据交换平台", "Public data exchange"),
    "skip": ("跳到主要内容", "Skip to main content"),
    "nav": ("主导航", "Main navigation"),
    "language": ("语言", "Language"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "login": ("用户名", "Login"),
    "password": ("密码", "Password"),
    "totp": ("动态口令（TOTP 六位数字）", "One-time code (TOTP, six digits)"),
    "bad_credentials": ("用户名、密码或动态口令错误。", "Wrong login, password or one-time code."),
    "too_many": ("尝试次数过多，请稍后再试。", "Too many attempts; try again later."),
    "forbidden": ("您的角色无权访问此页面。", "Your role may not open this page."),
    "csrf_refused": (
        "请求被拒绝：跨站请求校验失败。",
        "Refused: the cross-site request check failed.",
    ),
    "not_found": ("未找到。", "Not found."),
    "rules_title": ("分析规则", "Analysis rules"),
    "job_durations": ("任务耗时（秒）", "Job durations (seconds)"),
    "job_waiting_s": ("等待（审批与排队）", "Waiting (approvals, queue)"),
    "job_running_s": ("运行", "Running"),
    "rules_unreadable": ("无法读取此数据集的分析规则。", "The analysis rules could not be read."),
    "rules_version": ("版本", "Version"),
    "rules_operators": ("允许的算子（不选则不限）", "Operators allowed (none ticked: any)"),
    "rules_min_cohort": ("最小群组人数", "Minimum cohort"),
    "rules_epsilon_per_query": ("每次查询的 ε 上限", "ε per query at most"),
    "rules_budget_epsilon": ("数据集（血缘）ε 总预算", "ε budget of the dataset's lineage"),
    "rules_requester_budget_epsilon": ("每个需求方的 ε 预算", "ε budget per requester"),
    "rules_derived_from": ("派生自（数据集 ID）", "Derived from (dataset id)"),
    "rules_columns": ("列规则（JSON）", "Column rules (JSON)"),
    "rules_save": ("保存规则（记入账本）", "Save the rules (recorded on the ledger)"),
    "rules_saved": ("分析规则已保存。", "The analysis rules are saved."),
    "rules_bad_number": ("请填写数字。", "Enter numbers where numbers are asked."),
    "rules_bad_json": ("列规则须为 JSON 对象。", "Column rules must be a JSON object."),
    "done": ("已完成。", "Done."),
    "signed_in_as": ("当前用户", "Signed in as"),
    "provider": ("数据提供方", "Provider"),
    "enterprise": ("数据使用方", "Enterprise"),
    "auditor": ("审计", "Auditor"),
    "admin": ("安全管理", "Security admin"),
    "provider_title": ("数据提供方工作台", "Provider workspace"),
    "enterprise_title": ("数据使用方工作台", "Enterprise workspace"),
    "auditor_title": ("审计工作台", "Auditor workspace"),
    "admin_title": ("安全管理工作台", "Security administration"),
    "register_dataset": ("登记数据集", "Register a dataset"),
    "name": ("名称", "Name"),
    "description": ("描述", "Description"),
    "classification_path": ("分类路径（用 / 分隔）", "Classification path (separated by /)"),
    "level": ("分级", "Level"),
    "impact_object": ("影响对象", "Impact object"),
    "impact_degree": ("影响程度", "Impact degree"),
    "source_agency": ("来源单位", "Source agency"),
    "accountable_department": ("责任部门", "Accountable department"),
    "pi": ("含个人信息", "Contains personal information"),
    "sensitive_pi": ("含敏感个人信息", "Contains sensitive personal information"),
    "share_attribute": ("共享属性", "Share attribute"),
    "open_attribute": ("开放属性", "Open attribute"),
    "file": ("CSV 文件", "CSV file"),
    "submit_register": ("上传并扫描", "Upload and scan"),
    "file_missing": ("请选择文件。", "Choose a file."),
    "file_too_large": (
        "文件过大，请使用 API 或 SDK 上传。",
        "File too large; upload it with the API or SDK.",
    ),
    "registered": ("数据集已登记，扫描报告如下。", "Dataset registered; its scan report follows."),
    "my_datasets": ("我的数据集", "My datasets"),
    "rows": ("行数", "Rows"),
    "registered_at": ("登记时间", "Registered"),
    "ledger_index": ("账本序号", "Ledger index"),
    "waiting": ("待我审批", "Waiting for my approval"),
    "none": ("暂无。", "None."),
    "approve": ("批准", "Approve"),
    "reject": ("拒绝", "Reject"),
    "reason": ("理由", "Reason"),
    "operator": ("算子", "Operator"),
    "state": ("状态", "State"),
    "requester": ("请求方", "Requester"),
    "my_ledger": ("我的账本记录", "My ledger entries"),
    "event": ("事件", "Event"),
    "scan_report": ("扫描报告", "Scan report"),
    "suggested_level": ("建议分级", "Suggested level"),
    "most_sensitive": ("最敏感字段", "Most sensitive field"),
    "field": ("字段", "Field"),
    "detections": ("检出", "Detections"),
    "catalog": ("数据目录", "Catalogue"),
    "search": ("搜索", "Search"),
    "any_level": ("全部分级", "Any level"),
    "operators": ("可用算子", "Operators"),
    "request": ("发起计算", "Request"),
    "my_computations": ("我的计算", "My computations"),
    "computation": ("计算任务", "Computation"),
    "inputs": ("输入数据集", "Input datasets"),
    "purpose": ("用途（须与合同一致）", "Purpose (as in the contract)"),
    "legal_basis": ("合法性基础（可选）", "Legal basis (optional)"),
    "contract_id": ("合同编号（可选）", "Contract id (optional)"),
    "parameters": ("参数", "Parameters"),
    "lo": ("下限", "low"),
    "hi": ("上限", "high"),
    "submit_request": ("提交计算请求", "Submit the request"),
    "progress": ("进度", "Progress"),
    "result": ("结果", "Result"),
    "view_result": ("查看结果", "View the result"),
    "epsilon": ("隐私预算 ε", "Privacy budget ε"),
    "error": ("错误", "Error"),
    "at": ("时间", "At"),
    "ledger": ("账本", "Ledger"),
    "tree_size": ("已封存条目数", "Sealed entries"),
    "index": ("序号", "Index"),
    "type": ("类型", "Type"),
    "verify": ("在浏览器中验证", "Verify in the browser"),
    "proof_ok": ("包含证明有效", "Inclusion proof verified"),
    "proof_bad": ("包含证明无效", "Inclusion proof FAILED"),
    "proof_unsealed": ("尚未封存，稍后再试", "Not sealed yet; try later"),
    "audit_records": ("审计记录", "Audit records"),
    "decision_logs": ("决策日志", "Decision logs"),
    "filter": ("筛选", "Filter"),
    "result_word": ("结果", "Result"),
    "subject": ("主体", "Subject"),
    "total": ("共", "Total"),
    "allowed": ("允许", "Allowed"),
    "denied": ("拒绝", "Denied"),
    "any": ("全部", "Any"),
    "compliance_runs": ("合规检查", "Compliance runs"),
    "run_now": ("立即检查", "Run now"),
    "status": ("结论", "Status"),
    "plot_growth": ("账本增长（已封存条目）", "Ledger growth (sealed entries)"),
    "plot_decisions": ("近 24 小时决策（允许/拒绝）", "Decisions in 24 h (allowed/denied)"),
    "policies": ("策略", "Policies"),
    "active_revision": ("当前版本", "Active revision"),
    "history": ("历史版本", "History"),
    "rollback": ("回滚到此版本", "Roll back to this"),
    "module": ("模块", "Module"),
    "source": ("源码", "Source"),
    "show_diff": ("查看差异", "Show the diff"),
    "activate": ("激活", "Activate"),
    "activated": ("已激活策略版本 {revision}。", "Policy revision {revision} activated."),
    "changes": ("变更", "Changes"),
    "keys": ("密钥", "Keys"),
    "organisations": ("机构与人员", "Organisations and people"),
    "kind": ("类型", "Kind"),
    "no_changes": ("没有差异。", "No differences."),
    "loading": ("加载中…", "Loading…"),
    "checkpoints": ("检查点（区块）", "Checkpoints (blocks)"),
    "block": ("区块", "Block"),
    "check_consistency": ("与最新检查点比对一致性", "Check consistency with the newest"),
    "consistency_ok": ("签名与一致性证明有效", "Signatures and consistency proof verified"),
    "consistency_bad": ("签名或一致性证明无效", "Signature or consistency proof FAILED"),
    "sig_unchecked": (
        "此浏览器不支持 Ed25519，签名未检查",
        "Signature not checked in this browser (no Ed25519)",
    ),
    "plot_compliance": ("合规检查趋势（通过/不通过）", "Compliance trend (pass/fail)"),
    "passed": ("通过", "Pass"),
    "failed": ("不通过", "Fail"),
    "changed": ("结论有变化的要求", "Requirements that changed"),
    "dry_run": ("试运行（最近的决策）", "Dry run on recent decisions"),
    "dry_run_summary": (
        "重新判定最近 {evaluated} 条决策：{changed} 条结论会改变，{failed} 条无法判定。",
        "Re-decided the last {evaluated} decisions: {changed} would change, {failed} failed.",
    ),
    "action": ("操作", "Action"),
    "evaluated": ("判定数", "Decided"),
    "allow_to_deny": ("允许→拒绝", "Allow → deny"),
    "deny_to_allow": ("拒绝→允许", "Deny → allow"),
    "suppressed": ("已抑制", "suppressed"),
    "plot_histogram": ("直方图（分组 {group}）", "Histogram (group {group})"),
    "plot_loss": ("联邦学习：每轮损失", "Federated learning: loss per round"),
    "plot_accuracy": ("联邦学习：每轮准确率", "Federated learning: accuracy per round"),
    # The enterprise's own job key (pages_jobkeys, static/jobkey.js); {…} filled in the browser.
    "jk_legend": ("任务密钥", "Job key"),
    "jk_option": (
        "在本浏览器中生成任务密钥（Paillier），结果只在本浏览器中解密",
        "Generate the job key in this browser (Paillier); the result is decrypted only here",
    ),
    "jk_help": (
        "请求只携带公钥（n 与指纹）；私钥保存在本浏览器中，可在计算页面下载。",
        "The request carries the public key only (n and its fingerprint); the private key "
        "stays in this browser and can be downloaded from the computation's page.",
    ),
    "jk_generating": ("正在生成 {bits} 位密钥…", "Generating a {bits}-bit key…"),
    "jk_ready": (
        "密钥已就绪：{bits} 位，用时 {seconds} 秒，指纹 {fingerprint}",
        "Key ready: {bits} bits in {seconds} s, fingerprint {fingerprint}",
    ),
    "jk_failed": ("密钥生成失败：{error}", "Key generation failed: {error}"),
    "jk_title": ("任务密钥（由本机构持有）", "Job key (held by your organisation)"),
    "jk_fingerprint": ("公钥指纹", "Public key fingerprint"),
    "jk_held": ("私钥保存在本浏览器中。", "The private key is in this browser."),
    "jk_missing": (
        "本浏览器中没有此计算的私钥。平台不持有明文结果：只有生成密钥的浏览器（或下载的密钥）能解密。",
        "This browser does not hold this computation's private key. The platform has no "
        "plaintext of the result: only the browser that made the key (or its download) "
        "can decrypt it.",
    ),
    "jk_download": ("下载私钥（请妥善保管）", "Download the private key (keep it safe)"),
    "jk_sealed": ("密文结果，在本浏览器中解密", "Encrypted result, decrypted in this browser"),
    "jk_decrypting": ("正在获取并解密…", "Fetching and decrypting…"),
    "jk_decrypted": (
        "已在本浏览器中用密钥 {fingerprint} 解密。",
        "Decrypted in this browser with key {fingerprint}.",
    ),
    "jk_fetch_failed": ("获取结果失败：{error}", "Could not fetch the result: {error}"),
    "jk_decrypt_failed": ("解密失败：{error}", "Decryption failed: {error}"),
    "jk_facts": (
        "隐私预算 ε：{epsilon} · 已抑制：{suppressed} · 账本序号：{ledger} · 摘要：{digest}",
        "Privacy budget ε: {epsilon} · suppressed: {suppressed} · ledger index: {ledger} · "
        "digest: {digest}",
    ),
    "jk_group": ("分组", "Group"),
    "jk_measure": ("指标", "Measure"),
    "jk_value": ("值", "Value"),
    "jk_exact": ("精确值", "Exact"),
    "jk_no_key": (
        "此浏览器没有生成任务密钥（需要启用 JavaScript）。",
        "This browser made no job key (JavaScript is needed).",
    ),
}

_INDEX = {lang: i for i, lang in enumerate(LANGUAGES)}
# The market pages' messages live beside them; none of their keys is one of the above.
_MESSAGES.update({k: v for k, v in MARKET_MESSAGES.items() if k not in _MESSAGES})
_MESSAGES.update({k: v for k, v in PASSKEY_MESSAGES.items() if k not in _MESSAGES})


def t(lang: str, key: str, **values: Any) -> str:
    """The message in `lang` (zh-CN if unknown); the key itself if it is missing."""
    pair = _MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[_INDEX.get(lang, 0)]
    return text.format(**values) if values else text


def keys() -> frozenset[str]:
    return frozenset(_MESSAGES)
