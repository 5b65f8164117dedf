// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title NoDecimalsToken
/// @notice An ERC-20 without the optional decimals() (EIP-20 makes it optional): a call
///         to it reverts with empty data. Devnet only: anyone may mint.
contract NoDecimalsToken {
    string public name = "No Decimals";
    string public symbol = "NODEC";
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
    }
}
