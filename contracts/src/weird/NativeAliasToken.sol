// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title NativeAliasToken
/// @notice An ERC-20 view of the native coin (as CELO's GoldToken or Polygon's 0x...1010
///         are): balanceOf(owner) is owner's native balance. Counting it and the native
///         coin would count the same money twice.
contract NativeAliasToken {
    string public constant name = "Native Alias";
    string public constant symbol = "ETH";
    uint8 public constant decimals = 18;

    function balanceOf(address owner) external view returns (uint256) {
        return owner.balance;
    }
}
