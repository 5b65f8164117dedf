// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title BrokenToken
/// @notice A token whose balanceOf misbehaves in a fixed way, chosen at deployment:
///         1 reverts, 2 returns 16 bytes (short data), 3 returns no data at all,
///         4 returns 64 bytes. decimals() and symbol() are well-formed.
contract BrokenToken {
    error BalanceUnavailable(address owner);

    uint8 public immutable mode;
    string public symbol = "BRK";
    uint8 public constant decimals = 18;

    constructor(uint8 mode_) {
        mode = mode_;
    }

    function balanceOf(address owner) external view returns (uint256) {
        uint8 m = mode;
        if (m == 1) revert BalanceUnavailable(owner);
        if (m == 2) {
            assembly {
                mstore(0, 0xffffffffffffffffffffffffffffffff)
                return(16, 16)
            }
        }
        if (m == 3) {
            assembly {
                return(0, 0)
            }
        }
        if (m == 4) {
            assembly {
                mstore(0, 7)
                mstore(32, 7)
                return(0, 64)
            }
        }
        return 1;
    }
}
