"""The security page's and passkey sign-in's messages: zh-CN and English, merged into `i18n`."""

from __future__ import annotations

# key: (zh-CN, en), as in `i18n`.
MESSAGES: dict[str, tuple[str, str]] = {
    "security": ("账户安全", "Account security"),
    "passkeys": ("通行密钥（WebAuthn）", "Passkeys (WebAuthn)"),
    "passkeys_intro": (
        "通行密钥可代替动态口令作为第二因素；密码仍是第一因素。",
        "A passkey can replace the one-time code as the second factor; the password stays "
        "the first.",
    ),
    "passkey_id": ("凭据标识", "Credential id"),
    "created": ("创建时间", "Created"),
    "last_used": ("最近使用", "Last used"),
    "remove": ("移除", "Remove"),
    "no_passkeys": ("尚未登记通行密钥。", "No passkey registered yet."),
    "add_passkey": ("登记通行密钥", "Add a passkey"),
    "passkey_added": ("通行密钥已登记。", "Passkey added."),
    "passkey_removed": ("通行密钥已移除。", "Passkey removed."),
    "passkey_refused": (
        "未移除：需要有效的动态口令。",
        "Not removed: a valid one-time code is needed.",
    ),
    "passkey_failed": ("通行密钥操作失败。", "The passkey step failed."),
    "sign_in_passkey": ("改用通行密钥", "Use a passkey instead"),
    "no_passkey": (
        "此账户没有通行密钥，请输入动态口令。",
        "This account has no passkey; enter the one-time code.",
    ),
}
